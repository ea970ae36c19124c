package org.vitpalette.bench.core;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.text.SimpleDateFormat;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.TimeZone;
import java.util.regex.Pattern;

/**
 * Builds the result document (results/schema/result.schema.json) and writes it atomically.
 *
 * <p>The cross-field rules of the schema are applied when the document is built, so a failure
 * path cannot produce a result the collector refuses: a failure always carries error text, an
 * {@code ok} result never does, nothing is timed for {@code invalid_job}/{@code load_failed}.
 */
public final class ResultWriter {
    public static final int SCHEMA_VERSION = 1;
    /** The schema's limit on the error text. */
    public static final int MAX_ERROR_CHARS = 20000;

    private static final Pattern RUN_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

    private final String runId;
    private String runSet;
    private Status status = Status.CRASHED;
    private long startedAtMs;
    private long finishedAtMs;
    private String appVersion;
    private DeviceInfo device;
    private Map<String, Object> model;
    private Map<String, Object> runtime;
    private RunStats latency;
    private Map<String, Object> energy;
    private Integer thermalBefore;
    private Integer thermalAfter;
    private Long peakMemoryBytes;
    private Map<String, Object> golden;
    private String error;
    private Map<String, Object> budgetTrace;

    public ResultWriter(String runId) {
        if (runId == null || !RUN_ID.matcher(runId).matches()) {
            throw new IllegalArgumentException("run_id must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}, got " + runId);
        }
        this.runId = runId;
    }

    /**
     * A run id for a result whose job could not be read: the job's own run_id when it is usable,
     * else one made from the job file name and the time, so the failure is still stored.
     */
    public static String fallbackRunId(Map<String, Object> rawJob, String jobPath, long nowMs) {
        if (rawJob != null && rawJob.get("run_id") instanceof String
                && RUN_ID.matcher((String) rawJob.get("run_id")).matches()) {
            return (String) rawJob.get("run_id");
        }
        String base = jobPath == null ? "job" : jobPath.replaceAll(".*/", "").replaceAll("\\.json$", "");
        base = base.replaceAll("[^A-Za-z0-9._-]", "_").replaceAll("^[^A-Za-z0-9]+", "");
        if (base.isEmpty()) {
            base = "job";
        }
        if (base.length() > 80) {
            base = base.substring(0, 80);
        }
        return "invalid-" + base + "-" + nowMs;
    }

    public String runId() {
        return runId;
    }

    public ResultWriter runSet(String v) {
        this.runSet = v;
        return this;
    }

    public ResultWriter status(Status v) {
        this.status = v;
        return this;
    }

    public Status status() {
        return status;
    }

    public ResultWriter startedAtMs(long v) {
        this.startedAtMs = v;
        return this;
    }

    public ResultWriter finishedAtMs(long v) {
        this.finishedAtMs = v;
        return this;
    }

    public ResultWriter appVersion(String v) {
        this.appVersion = v == null ? null : DeviceInfo.clip(v, 64);
        return this;
    }

    public ResultWriter device(DeviceInfo v) {
        this.device = v;
        return this;
    }

    /** The model section copied from the job ({@link Job#modelSection()}). */
    public ResultWriter model(Map<String, Object> v) {
        this.model = v;
        return this;
    }

    public ResultWriter runtime(String name, String version, int threads, Job.Delegate delegate, Integer cores) {
        if (!"onnxruntime".equals(name) && !"litert".equals(name)) {
            throw new IllegalArgumentException("runtime name must be onnxruntime or litert, got " + name);
        }
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("name", name);
        m.put("version", version == null ? null : DeviceInfo.clip(version, 64));
        m.put("threads", (long) threads);
        m.put("delegate", delegate.wireName());
        m.put("cores", cores == null ? null : (Object) Long.valueOf(cores));
        this.runtime = m;
        return this;
    }

    public ResultWriter latency(RunStats v) {
        this.latency = v;
        return this;
    }

    /** The energy section ({@link EnergyIntegrator.Report#toMap} or {@link EnergyIntegrator#noneSection}). */
    public ResultWriter energy(Map<String, Object> v) {
        this.energy = v;
        return this;
    }

    /** Android thermal status (0..6) before and after; null where unread (below API 29). */
    public ResultWriter thermal(Integer before, Integer after) {
        this.thermalBefore = checkThermal(before);
        this.thermalAfter = checkThermal(after);
        return this;
    }

    private static Integer checkThermal(Integer v) {
        return v == null || v < 0 || v > 6 ? null : v;
    }

    public ResultWriter peakMemoryBytes(Long v) {
        this.peakMemoryBytes = v == null || v < 0 ? null : v;
        return this;
    }

    /** The golden section ({@link GoldenCheck#toMap()}), or null when the job has none. */
    public ResultWriter golden(Map<String, Object> v) {
        this.golden = v;
        return this;
    }

    /** The budget_trace section ({@link BudgetTraceStats#toMap()}); left out of the document when null. */
    public ResultWriter budgetTrace(Map<String, Object> v) {
        this.budgetTrace = v;
        return this;
    }

    public ResultWriter error(String v) {
        this.error = v;
        return this;
    }

    /**
     * Error text for a throwable: class and message, the top of its stack and of each cause
     * (enough to find the failing call without a logcat capture).
     */
    public static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder();
        if (t instanceof BenchException && ((BenchException) t).nextStep() != null) {
            sb.append(((BenchException) t).describe()).append('\n');
        }
        Throwable cur = t;
        int depth = 0;
        while (cur != null && depth < 5) {
            sb.append(depth == 0 ? "" : "Caused by: ").append(cur).append('\n');
            StackTraceElement[] frames = cur.getStackTrace();
            int shown = Math.min(frames.length, depth == 0 ? 12 : 6);
            for (int i = 0; i < shown; i++) {
                sb.append("\tat ").append(frames[i]).append('\n');
            }
            if (frames.length > shown) {
                sb.append("\t... ").append(frames.length - shown).append(" more\n");
            }
            cur = cur.getCause() == cur ? null : cur.getCause();
            depth++;
        }
        return clipError(sb.toString().trim());
    }

    static String clipError(String text) {
        if (text.length() <= MAX_ERROR_CHARS) {
            return text;
        }
        return text.substring(0, MAX_ERROR_CHARS - 20) + "\n... (truncated)";
    }

    /** ISO 8601 UTC with milliseconds, e.g. 2026-11-23T04:12:00.125Z. */
    public static String isoUtc(long epochMs) {
        SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", Locale.ROOT);
        f.setTimeZone(TimeZone.getTimeZone("UTC"));
        return f.format(new Date(epochMs));
    }

    /** The document as plain maps and lists, with the schema's cross-field rules applied. */
    public Map<String, Object> toMap() {
        if (device == null) {
            throw new IllegalStateException("result " + runId + " has no device section; call device() first");
        }
        String err = error;
        if (status == Status.OK) {
            if (err != null) {
                throw new IllegalStateException("result " + runId + " has status ok but an error: " + err);
            }
            if (model == null || runtime == null || latency == null || energy == null) {
                throw new IllegalStateException("result " + runId
                        + " has status ok but lacks model, runtime, latency or energy");
            }
        } else if (err == null || err.isEmpty()) {
            err = "status " + status.wireName() + " (no error text was recorded; this is a bug in the app)";
        }
        if (status != Status.INVALID_JOB && (model == null || runtime == null)) {
            throw new IllegalStateException("result " + runId + " with status " + status.wireName()
                    + " needs the model and runtime sections (only invalid_job may leave them out)");
        }
        long finished = Math.max(finishedAtMs, startedAtMs);
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("schema_version", (long) SCHEMA_VERSION);
        m.put("run_id", runId);
        m.put("run_set", runSet);
        m.put("status", status.wireName());
        m.put("started_at", isoUtc(startedAtMs));
        m.put("finished_at", isoUtc(finished));
        m.put("app_version", appVersion);
        m.put("device", device.toMap());
        m.put("model", model);
        m.put("runtime", runtime);
        boolean untimed = status == Status.INVALID_JOB || status == Status.LOAD_FAILED;
        m.put("latency", latency == null || untimed ? null : latency.toMap());
        m.put("energy", energy);
        Map<String, Object> thermal = new LinkedHashMap<String, Object>();
        thermal.put("before", thermalBefore == null ? null : (Object) Long.valueOf(thermalBefore));
        thermal.put("after", thermalAfter == null ? null : (Object) Long.valueOf(thermalAfter));
        m.put("thermal", thermal);
        m.put("peak_memory_bytes", peakMemoryBytes);
        m.put("golden", golden);
        m.put("error", err == null ? null : clipError(err));
        if (budgetTrace != null) {
            m.put("budget_trace", latency == null || untimed ? null : budgetTrace);
        }
        return m;
    }

    /** Pretty JSON text of {@link #toMap()}. */
    public String toJson() {
        return Json.writePretty(toMap());
    }

    /** Writes the document to {@code target} via a temporary file in the same folder and a rename. */
    public Path writeTo(Path target) throws IOException {
        writeAtomically(target, toJson());
        return target;
    }

    /**
     * Writes text (UTF-8) so that readers see either the old file or the whole new one, never a
     * half-written file: temp name in the same folder, flushed to disk, then renamed over.
     */
    public static void writeAtomically(Path target, String text) throws IOException {
        Path dir = target.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = dir.resolve("." + target.getFileName() + ".tmp-" + System.nanoTime());
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                ch.write(java.nio.ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8)));
                ch.force(true);
            }
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
    }
}
