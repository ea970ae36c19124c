package org.vitpalette.bench.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** Peak resident memory of this process from /proc (Linux and Android alike). */
public final class ProcMemory {
    private ProcMemory() {
    }

    /** VmHWM of /proc/self/status in bytes, or null where /proc is not readable. */
    public static Long peakRssBytes() {
        return peakRssBytes(Paths.get("/proc/self/status"));
    }

    /** VmHWM (peak resident set) of a status file in bytes, or null when absent. */
    public static Long peakRssBytes(Path statusFile) {
        try {
            for (String line : new String(Files.readAllBytes(statusFile), StandardCharsets.UTF_8).split("\n")) {
                if (line.startsWith("VmHWM:")) {
                    String[] parts = line.substring(6).trim().split("\\s+");
                    long value = Long.parseLong(parts[0]);
                    String unit = parts.length > 1 ? parts[1] : "kB";
                    return "kB".equalsIgnoreCase(unit) ? value * 1024 : value;
                }
            }
        } catch (IOException | RuntimeException e) {
            return null;
        }
        return null;
    }
}
