package org.vitpalette.bench.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A job document that cannot be run: unreadable, malformed or against job.schema.json.
 *
 * <p>Every problem found is listed (one per field), so one round trip fixes them all. The app
 * reports these with status {@code invalid_job}.
 */
public class JobException extends BenchException {
    private static final long serialVersionUID = 1L;
    private final List<String> problems;

    public JobException(String source, List<String> problems) {
        super(summary(source, problems),
                "fix the job file to match results/schema/job.schema.json (schema_version "
                        + Job.SCHEMA_VERSION + ") and start the app again");
        this.problems = Collections.unmodifiableList(new ArrayList<String>(problems));
    }

    public JobException(String source, String problem, Throwable cause) {
        super("invalid job " + source + ": " + problem,
                "fix the job file to match results/schema/job.schema.json and start the app again", cause);
        List<String> one = new ArrayList<String>();
        one.add(problem);
        this.problems = Collections.unmodifiableList(one);
    }

    private static String summary(String source, List<String> problems) {
        StringBuilder sb = new StringBuilder("invalid job ").append(source).append(": ");
        for (int i = 0; i < problems.size(); i++) {
            if (i > 0) {
                sb.append("; ");
            }
            sb.append(problems.get(i));
        }
        return sb.toString();
    }

    /** One line per problem, each naming the field (e.g. "runtime.threads: must be >= 1, got 0"). */
    public List<String> problems() {
        return problems;
    }
}
