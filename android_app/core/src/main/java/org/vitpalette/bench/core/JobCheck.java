package org.vitpalette.bench.core;

import java.nio.file.Paths;

/**
 * Command line check of job files with the same code the app runs:
 * {@code java -cp android_app/core/build/classes org.vitpalette.bench.core.JobCheck job.json...}.
 * Prints one line per file ("OK path" or "INVALID path: problem; problem") and exits 1 when any
 * file is invalid, 2 without arguments.
 */
public final class JobCheck {
    private JobCheck() {
    }

    public static void main(String[] args) {
        if (args.length == 0) {
            System.err.println("usage: JobCheck job.json [job.json ...]");
            System.exit(2);
        }
        boolean allValid = true;
        for (String arg : args) {
            try {
                Job job = Job.load(Paths.get(arg));
                System.out.println("OK " + arg + " run_id=" + job.runId);
            } catch (JobException e) {
                allValid = false;
                StringBuilder sb = new StringBuilder();
                for (String p : e.problems()) {
                    sb.append(sb.length() == 0 ? "" : "; ").append(p.replace('\n', ' '));
                }
                System.out.println("INVALID " + arg + ": " + sb);
            }
        }
        System.exit(allValid ? 0 : 1);
    }
}
