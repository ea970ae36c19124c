package org.vitpalette.bench.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The job document (host to app), parsed and checked with the same rules as
 * {@code results/schema/job.schema.json}: required keys, types, ranges, patterns, and unknown
 * keys rejected. Immutable once built.
 *
 * <p>Every problem is collected and reported together, each naming its field with a dotted path
 * ({@code runtime.threads}, {@code energy.current_unit}).
 */
public final class Job {
    /** The only job schema version this build reads. */
    public static final int SCHEMA_VERSION = 1;

    /** Model file format. */
    public enum Format {
        ONNX("onnx"), TFLITE("tflite");

        private final String wire;

        Format(String wire) {
            this.wire = wire;
        }

        /** The string used in JSON. */
        public String wireName() {
            return wire;
        }
    }

    /** Which execution backend the runtime should use. */
    public enum Delegate {
        CPU("cpu"), XNNPACK("xnnpack"), GPU("gpu"), NNAPI("nnapi");

        private final String wire;

        Delegate(String wire) {
            this.wire = wire;
        }

        public String wireName() {
            return wire;
        }
    }

    /** Unit of BatteryManager's current reading on this device. */
    public enum CurrentUnit {
        AUTO("auto"), UA("ua"), MA("ma");

        private final String wire;

        CurrentUnit(String wire) {
            this.wire = wire;
        }

        public String wireName() {
            return wire;
        }
    }

    /** Sign convention of the current reading. Android's own is negative while discharging. */
    public enum CurrentSign {
        AUTO("auto"), POSITIVE_IS_DISCHARGE("positive_is_discharge"), NEGATIVE_IS_DISCHARGE("negative_is_discharge");

        private final String wire;

        CurrentSign(String wire) {
            this.wire = wire;
        }

        public String wireName() {
            return wire;
        }
    }

    /** Runtime settings. */
    public static final class Runtime {
        public final int threads;
        public final Delegate delegate;

        public Runtime(int threads, Delegate delegate) {
            this.threads = threads;
            this.delegate = delegate;
        }
    }

    /** Energy sampling settings. */
    public static final class Energy {
        public final int sampleIntervalMs;
        public final double idleBaselineS;
        public final CurrentUnit currentUnit;
        public final CurrentSign currentSign;
        public final boolean preferOdpm;

        public Energy(int sampleIntervalMs, double idleBaselineS, CurrentUnit currentUnit, CurrentSign currentSign,
                boolean preferOdpm) {
            this.sampleIntervalMs = sampleIntervalMs;
            this.idleBaselineS = idleBaselineS;
            this.currentUnit = currentUnit;
            this.currentSign = currentSign;
            this.preferOdpm = preferOdpm;
        }
    }

    /** Golden input/output pair (.npy float32) checked before timing. */
    public static final class Golden {
        public final String inputFile;
        public final String outputFile;
        public final double atol;
        public final double rtol;

        public Golden(String inputFile, String outputFile, double atol, double rtol) {
            this.inputFile = inputFile;
            this.outputFile = outputFile;
            this.atol = atol;
            this.rtol = rtol;
        }
    }

    /** One configuration a budget trace can switch to. */
    public static final class TraceConfig {
        public final String name;
        public final String file;
        public final String sha256;
        public final double costMs;
        public final double accuracy;

        public TraceConfig(String name, String file, String sha256, double costMs, double accuracy) {
            this.name = name;
            this.file = file;
            this.sha256 = sha256;
            this.costMs = costMs;
            this.accuracy = accuracy;
        }
    }

    /**
     * A budget trace: the configurations to load once, the per-frame budgets, and how many frames
     * to run (frame i has budget {@code budgetsMs[i % budgetsMs.length]}).
     */
    public static final class BudgetTrace {
        public final List<TraceConfig> configurations;
        private final double[] budgetsMs;
        public final int frames;

        public BudgetTrace(List<TraceConfig> configurations, double[] budgetsMs, int frames) {
            this.configurations = Collections.unmodifiableList(new ArrayList<TraceConfig>(configurations));
            this.budgetsMs = budgetsMs.clone();
            this.frames = frames;
        }

        /** The budget of frame {@code i}. */
        public double budgetMs(int frame) {
            return budgetsMs[frame % budgetsMs.length];
        }

        public int budgetCount() {
            return budgetsMs.length;
        }

        /** The selector's view of the configurations, in the order given. */
        public List<BudgetSelector.Entry> front() {
            List<BudgetSelector.Entry> out = new ArrayList<BudgetSelector.Entry>();
            for (TraceConfig c : configurations) {
                out.add(new BudgetSelector.Entry(c.name, c.costMs, c.accuracy, c.file));
            }
            return out;
        }
    }

    public final int schemaVersion;
    public final String runId;
    /** Optional label grouping runs; null when absent. */
    public final String runSet;
    /** Optional creation time (ISO 8601); null when absent. */
    public final String createdAt;
    public final String modelName;
    public final String modelFile;
    public final Format format;
    public final String mode;
    public final String modelSha256;
    public final long modelBytes;
    public final Runtime runtime;
    public final int warmupRuns;
    public final int measuredRuns;
    public final double minDurationS;
    public final double cooldownS;
    /** Wall-clock limit for the whole job, or null for none. */
    public final Double timeoutS;
    public final Energy energy;
    /** Null when the job has no golden check. */
    public final Golden golden;
    /** Base URL of the collector, or null. */
    public final String collectorUrl;
    public final String collectorToken;
    /** Device path for the result, or null for the app's default. */
    public final String resultFile;
    /** The budget trace of a dynamic-execution job; null when this is not a trace job. */
    public final BudgetTrace budgetTrace;

    private Job(Builder b) {
        this.schemaVersion = b.schemaVersion;
        this.runId = b.runId;
        this.runSet = b.runSet;
        this.createdAt = b.createdAt;
        this.modelName = b.modelName;
        this.modelFile = b.modelFile;
        this.format = b.format;
        this.mode = b.mode;
        this.modelSha256 = b.modelSha256;
        this.modelBytes = b.modelBytes;
        this.runtime = b.runtime;
        this.warmupRuns = b.warmupRuns;
        this.measuredRuns = b.measuredRuns;
        this.minDurationS = b.minDurationS;
        this.cooldownS = b.cooldownS;
        this.timeoutS = b.timeoutS;
        this.energy = b.energy;
        this.golden = b.golden;
        this.collectorUrl = b.collectorUrl;
        this.collectorToken = b.collectorToken;
        this.resultFile = b.resultFile;
        this.budgetTrace = b.budgetTrace;
    }

    /** A copy for one configuration of the budget trace (the app's loader opens modelFile/format). */
    private Job(Job base, TraceConfig config) {
        this.schemaVersion = base.schemaVersion;
        this.runId = base.runId;
        this.runSet = base.runSet;
        this.createdAt = base.createdAt;
        this.modelName = base.modelName + "/" + config.name;
        this.modelFile = config.file;
        String lower = config.file.toLowerCase(java.util.Locale.ROOT);
        this.format = lower.endsWith(".tflite") ? Format.TFLITE : lower.endsWith(".onnx") ? Format.ONNX : base.format;
        this.mode = base.mode;
        this.modelSha256 = config.sha256;
        this.modelBytes = base.modelBytes;
        this.runtime = base.runtime;
        this.warmupRuns = base.warmupRuns;
        this.measuredRuns = base.measuredRuns;
        this.minDurationS = base.minDurationS;
        this.cooldownS = base.cooldownS;
        this.timeoutS = base.timeoutS;
        this.energy = base.energy;
        this.golden = null;
        this.collectorUrl = base.collectorUrl;
        this.collectorToken = base.collectorToken;
        this.resultFile = base.resultFile;
        this.budgetTrace = null;
    }

    /**
     * The job as the {@link ModelLoader} sees it for one budget-trace configuration: its file,
     * sha256 and format (from the file name), the same runtime settings, no golden pair and no
     * trace. modelBytes is the main model's (configurations carry no size).
     */
    public Job forConfiguration(TraceConfig config) {
        return new Job(this, config);
    }

    /** Reads and checks a job file (UTF-8). */
    public static Job load(Path path) throws JobException {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(path);
        } catch (IOException e) {
            throw new JobException(path.toString(), "cannot read the file (" + e + "); push it and check the path",
                    e);
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw new JobException(path.toString(), "the file is not valid UTF-8", e);
        }
        return parse(text, path.toString());
    }

    /** Parses and checks job JSON text; {@code source} names it in messages (a path or "intent"). */
    public static Job parse(String text, String source) throws JobException {
        Map<String, Object> doc;
        try {
            doc = Json.parseObject(text);
        } catch (JsonException e) {
            throw new JobException(source, "malformed JSON: " + e.getMessage(), e);
        }
        return fromMap(doc, source);
    }

    /** Checks an already parsed document. */
    public static Job fromMap(Map<String, Object> doc, String source) throws JobException {
        Checker c = new Checker();
        Builder b = new Builder();
        c.keys("", doc, TOP_REQUIRED, TOP_ALLOWED);

        Object version = doc.get("schema_version");
        if (doc.containsKey("schema_version")) {
            if (!(version instanceof Number) || ((Number) version).doubleValue() != SCHEMA_VERSION) {
                c.add("schema_version: this app reads version " + SCHEMA_VERSION + ", got " + show(version)
                        + " (update the app or write the job for version " + SCHEMA_VERSION + ")");
            }
        }
        b.schemaVersion = SCHEMA_VERSION;
        b.runId = c.string(doc, "", "run_id", false, 1, 128, RUN_ID, "letters, digits, '.', '_', '-'"
                + " (not starting with a punctuation mark), at most 128 characters");
        if (b.runId != null && !RUN_ID_FULL.matcher(b.runId).matches()) {
            c.add("run_id: must be safe as a file name (no line breaks), got " + show(b.runId));
        }
        b.runSet = c.string(doc, "", "run_set", true, 1, 128, null, null);
        b.createdAt = c.string(doc, "", "created_at", false, 0, Integer.MAX_VALUE, TIMESTAMP,
                "an ISO 8601 date-time with a zone, e.g. 2026-01-31T12:00:00Z");
        b.modelName = c.string(doc, "", "model_name", false, 1, 256, null, null);
        b.modelFile = c.devicePath(doc, "", "model_file", false);
        String format = c.choice(doc, "", "format", FORMATS);
        b.format = format == null ? null : Format.valueOf(format.toUpperCase(java.util.Locale.ROOT));
        b.mode = c.string(doc, "", "mode", false, 0, Integer.MAX_VALUE, MODE,
                "lower-case letters, digits, '.', '_', '-' (dense, palette, palette-int8, ...)");
        b.modelSha256 = c.string(doc, "", "model_sha256", false, 0, Integer.MAX_VALUE, SHA256,
                "64 lower-case hex digits");
        Long bytes = c.integer(doc, "", "model_bytes", 1, Long.MAX_VALUE);
        b.modelBytes = bytes == null ? 0 : bytes;

        Map<String, Object> rt = c.object(doc, "", "runtime", false);
        if (rt != null) {
            c.keys("runtime.", rt, RUNTIME_KEYS, RUNTIME_KEYS);
            Long threads = c.integer(rt, "runtime.", "threads", 1, 64);
            String delegate = c.choice(rt, "runtime.", "delegate", DELEGATES);
            b.runtime = new Runtime(threads == null ? 1 : threads.intValue(),
                    delegate == null ? null : Delegate.valueOf(delegate.toUpperCase(java.util.Locale.ROOT)));
        }
        Long warmup = c.integer(doc, "", "warmup_runs", 0, 100000);
        b.warmupRuns = warmup == null ? 0 : warmup.intValue();
        Long measured = c.integer(doc, "", "measured_runs", 1, 1000000);
        b.measuredRuns = measured == null ? 1 : measured.intValue();
        Double minDuration = c.number(doc, "", "min_duration_s", 0, 86400, false);
        b.minDurationS = minDuration == null ? 0 : minDuration;
        Double cooldown = c.number(doc, "", "cooldown_s", 0, 86400, false);
        b.cooldownS = cooldown == null ? 0 : cooldown;
        b.timeoutS = c.number(doc, "", "timeout_s", 0, Double.MAX_VALUE, true);

        Map<String, Object> en = c.object(doc, "", "energy", false);
        if (en != null) {
            c.keys("energy.", en, ENERGY_REQUIRED, ENERGY_ALLOWED);
            Long interval = c.integer(en, "energy.", "sample_interval_ms", 1, 60000);
            Double idle = c.number(en, "energy.", "idle_baseline_s", 0, 3600, false);
            String unit = en.containsKey("current_unit") ? c.choice(en, "energy.", "current_unit", UNITS) : "auto";
            String sign = en.containsKey("current_sign") ? c.choice(en, "energy.", "current_sign", SIGNS) : "auto";
            Boolean odpm = c.bool(en, "energy.", "prefer_odpm", true);
            b.energy = new Energy(interval == null ? 1000 : interval.intValue(), idle == null ? 0 : idle,
                    unit == null ? null : CurrentUnit.valueOf(unit.toUpperCase(java.util.Locale.ROOT)),
                    sign == null ? null : CurrentSign.valueOf(sign.toUpperCase(java.util.Locale.ROOT)),
                    odpm == null || odpm);
        }

        Map<String, Object> golden = c.object(doc, "", "golden", true);
        if (golden != null) {
            c.keys("golden.", golden, GOLDEN_KEYS, GOLDEN_KEYS);
            String in = c.devicePath(golden, "golden.", "input_file", false);
            String out = c.devicePath(golden, "golden.", "output_file", false);
            Double atol = c.number(golden, "golden.", "atol", 0, Double.MAX_VALUE, false);
            Double rtol = c.number(golden, "golden.", "rtol", 0, Double.MAX_VALUE, false);
            b.golden = new Golden(in, out, atol == null ? 0 : atol, rtol == null ? 0 : rtol);
        }
        b.collectorUrl = c.string(doc, "", "collector_url", true, 0, 2048, URL,
                "http://host:port or https://host:port with an optional path, no spaces");
        b.collectorToken = c.string(doc, "", "collector_token", true, 0, 512, null, null);
        b.resultFile = c.devicePath(doc, "", "result_file", true);
        Map<String, Object> bt = c.object(doc, "", "budget_trace", true);
        if (bt != null) {
            b.budgetTrace = budgetTrace(c, bt);
        }

        if (!c.problems.isEmpty()) {
            throw new JobException(source, c.problems);
        }
        return new Job(b);
    }

    private static BudgetTrace budgetTrace(Checker c, Map<String, Object> bt) {
        String p = "budget_trace.";
        int before = c.problems.size();
        c.keys(p, bt, TRACE_REQUIRED, TRACE_ALLOWED);
        List<TraceConfig> configs = new ArrayList<TraceConfig>();
        List<Object> list = c.array(bt, p, "configurations", 1, 64);
        if (list != null) {
            for (int i = 0; i < list.size(); i++) {
                String q = p + "configurations." + i;
                Object item = list.get(i);
                if (!(item instanceof Map)) {
                    c.add(q + ": must be an object, got " + Json.typeName(item));
                    continue;
                }
                @SuppressWarnings("unchecked")
                Map<String, Object> m = (Map<String, Object>) item;
                q = q + ".";
                c.keys(q, m, TRACE_CONFIG_KEYS, TRACE_CONFIG_KEYS);
                String name = c.string(m, q, "name", false, 1, 128, null, null);
                String file = c.devicePath(m, q, "file", false);
                String sha = c.string(m, q, "sha256", false, 0, Integer.MAX_VALUE, SHA256, "64 lower-case hex digits");
                Double cost = c.number(m, q, "cost_ms", 0, 86400000, false);
                Double acc = c.number(m, q, "accuracy", -1e9, 1e9, false);
                if (name != null && file != null && sha != null && cost != null && acc != null) {
                    configs.add(new TraceConfig(name, file, sha, cost, acc));
                }
            }
        }
        double[] budgets = null;
        List<Object> blist = c.array(bt, p, "budgets_ms", 1, 100000);
        if (blist != null) {
            budgets = new double[blist.size()];
            for (int i = 0; i < blist.size(); i++) {
                Object v = blist.get(i);
                String q = p + "budgets_ms." + i;
                if (!(v instanceof Number)) {
                    c.add(q + ": must be a number, got " + Json.typeName(v) + " " + show(v));
                    continue;
                }
                double d = ((Number) v).doubleValue();
                if (!(d > 0) || d > 86400000) {
                    c.add(q + ": must be > 0 and <= 86400000 ms, got " + show(v));
                    continue;
                }
                budgets[i] = d;
            }
        }
        Long frames = c.integer(bt, p, "frames", 1, 1000000);
        c.string(bt, p, "selector", true, 0, 1024, null, null);
        if (c.problems.size() != before || budgets == null) {
            return null;
        }
        return new BudgetTrace(configs, budgets, frames == null ? budgets.length : frames.intValue());
    }

    /** Where the result is POSTed: {@code <collector_url>/api/v1/results}, or null without a collector. */
    public String collectorResultsEndpoint() {
        if (collectorUrl == null) {
            return null;
        }
        String base = collectorUrl;
        while (base.endsWith("/")) {
            base = base.substring(0, base.length() - 1);
        }
        return base + "/api/v1/results";
    }

    // ---- schema rules --------------------------------------------------------------------------

    private static final Pattern RUN_ID = Pattern.compile("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    private static final Pattern RUN_ID_FULL = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
    private static final Pattern MODE = Pattern.compile("^[a-z0-9][a-z0-9._-]{0,63}$");
    private static final Pattern SHA256 = Pattern.compile("^[0-9a-f]{64}$");
    private static final Pattern DEVICE_PATH = Pattern.compile("^/");
    private static final Pattern TIMESTAMP = Pattern.compile(
            "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$");
    // Python's re (used by jsonschema) treats \s as Unicode whitespace; ask Java for the same.
    private static final Pattern URL = Pattern.compile("^https?://[^\\s/]+(/[^\\s]*)?$",
            Pattern.UNICODE_CHARACTER_CLASS);

    private static final List<String> FORMATS = Arrays.asList("onnx", "tflite");
    private static final List<String> DELEGATES = Arrays.asList("cpu", "xnnpack", "gpu", "nnapi");
    private static final List<String> UNITS = Arrays.asList("auto", "ua", "ma");
    private static final List<String> SIGNS = Arrays.asList("auto", "positive_is_discharge", "negative_is_discharge");

    private static final List<String> TOP_REQUIRED = Arrays.asList("schema_version", "run_id", "model_name",
            "model_file", "format", "mode", "model_sha256", "model_bytes", "runtime", "warmup_runs",
            "measured_runs", "min_duration_s", "cooldown_s", "energy");
    private static final List<String> TOP_ALLOWED = concat(TOP_REQUIRED, Arrays.asList("run_set", "created_at",
            "timeout_s", "golden", "collector_url", "collector_token", "result_file", "budget_trace"));
    private static final List<String> RUNTIME_KEYS = Arrays.asList("threads", "delegate");
    private static final List<String> ENERGY_REQUIRED = Arrays.asList("sample_interval_ms", "idle_baseline_s");
    private static final List<String> ENERGY_ALLOWED = concat(ENERGY_REQUIRED,
            Arrays.asList("current_unit", "current_sign", "prefer_odpm"));
    private static final List<String> TRACE_REQUIRED = Arrays.asList("configurations", "budgets_ms");
    private static final List<String> TRACE_ALLOWED = concat(TRACE_REQUIRED, Arrays.asList("frames", "selector"));
    private static final List<String> TRACE_CONFIG_KEYS = Arrays.asList("name", "file", "sha256", "cost_ms",
            "accuracy");
    private static final List<String> GOLDEN_KEYS = Arrays.asList("input_file", "output_file", "atol", "rtol");

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<String>(a);
        out.addAll(b);
        return Collections.unmodifiableList(out);
    }

    static String show(Object value) {
        if (value instanceof String) {
            String s = (String) value;
            if (s.length() > 80) {
                s = s.substring(0, 77) + "...";
            }
            return Json.write(s);
        }
        if (value instanceof Map || value instanceof List) {
            return Json.typeName(value);
        }
        return String.valueOf(value);
    }

    /** Collects problems while reading typed fields. */
    private static final class Checker {
        final List<String> problems = new ArrayList<String>();

        void add(String problem) {
            problems.add(problem);
        }

        void keys(String prefix, Map<String, Object> map, List<String> required, List<String> allowed) {
            for (String key : required) {
                if (!map.containsKey(key)) {
                    add(prefix + key + ": required but missing");
                }
            }
            Set<String> known = new HashSet<String>(allowed);
            for (String key : map.keySet()) {
                if (!known.contains(key)) {
                    add(prefix + key + ": unknown key (allowed: " + String.join(", ", allowed) + ")");
                }
            }
        }

        /** True when the value is present; false (and no problem) when optional and absent/null. */
        private boolean present(Map<String, Object> map, String prefix, String key, boolean nullable) {
            if (!map.containsKey(key)) {
                return false;
            }
            if (map.get(key) == null) {
                if (!nullable) {
                    add(prefix + key + ": must not be null");
                }
                return false;
            }
            return true;
        }

        String string(Map<String, Object> map, String prefix, String key, boolean nullable, int minLen, int maxLen,
                Pattern pattern, String patternHelp) {
            if (!present(map, prefix, key, nullable)) {
                return null;
            }
            Object v = map.get(key);
            if (!(v instanceof String)) {
                add(prefix + key + ": must be a string, got " + Json.typeName(v) + " " + show(v));
                return null;
            }
            String s = (String) v;
            int len = s.codePointCount(0, s.length());
            if (len < minLen) {
                add(prefix + key + ": must have at least " + minLen + " character(s), got " + show(s));
                return null;
            }
            if (len > maxLen) {
                add(prefix + key + ": must have at most " + maxLen + " characters, got " + len);
                return null;
            }
            if (pattern != null && !pattern.matcher(s).find()) {
                add(prefix + key + ": must be " + patternHelp + ", got " + show(s));
                return null;
            }
            return s;
        }

        String devicePath(Map<String, Object> map, String prefix, String key, boolean nullable) {
            return string(map, prefix, key, nullable, 2, 1024, DEVICE_PATH,
                    "an absolute device path starting with '/'");
        }

        String choice(Map<String, Object> map, String prefix, String key, List<String> allowed) {
            if (!present(map, prefix, key, false)) {
                return null;
            }
            Object v = map.get(key);
            if (!(v instanceof String) || !allowed.contains(v)) {
                add(prefix + key + ": must be one of " + String.join(", ", allowed) + ", got " + show(v));
                return null;
            }
            return (String) v;
        }

        /** An integer (JSON Schema counts 3.0 as an integer too) within [min, max]. */
        Long integer(Map<String, Object> map, String prefix, String key, long min, long max) {
            if (!present(map, prefix, key, false)) {
                return null;
            }
            Object v = map.get(key);
            if (!(v instanceof Number)) {
                add(prefix + key + ": must be an integer, got " + Json.typeName(v) + " " + show(v));
                return null;
            }
            double d = ((Number) v).doubleValue();
            if (!(v instanceof Long) && (d != Math.rint(d) || Double.isInfinite(d))) {
                add(prefix + key + ": must be an integer, got " + show(v));
                return null;
            }
            if (d < min || d > max) {
                add(prefix + key + ": must be between " + min + " and " + max + ", got " + show(v));
                return null;
            }
            return v instanceof Long ? (Long) v : Long.valueOf((long) d);
        }

        /** A number in [min, max], or in (min, max] when exclusiveMin. */
        Double number(Map<String, Object> map, String prefix, String key, double min, double max,
                boolean exclusiveMin) {
            if (!present(map, prefix, key, false)) {
                return null;
            }
            Object v = map.get(key);
            if (!(v instanceof Number)) {
                add(prefix + key + ": must be a number, got " + Json.typeName(v) + " " + show(v));
                return null;
            }
            double d = ((Number) v).doubleValue();
            if (exclusiveMin ? d <= min : d < min) {
                add(prefix + key + ": must be " + (exclusiveMin ? "> " : ">= ") + Json.formatDouble(min)
                        + ", got " + show(v));
                return null;
            }
            if (d > max) {
                add(prefix + key + ": must be <= " + Json.formatDouble(max) + ", got " + show(v));
                return null;
            }
            return d;
        }

        Boolean bool(Map<String, Object> map, String prefix, String key, boolean dflt) {
            if (!present(map, prefix, key, false)) {
                return map.containsKey(key) ? null : dflt;
            }
            Object v = map.get(key);
            if (!(v instanceof Boolean)) {
                add(prefix + key + ": must be true or false, got " + show(v));
                return null;
            }
            return (Boolean) v;
        }

        /** A JSON array with between minItems and maxItems items. */
        @SuppressWarnings("unchecked")
        List<Object> array(Map<String, Object> map, String prefix, String key, int minItems, int maxItems) {
            if (!present(map, prefix, key, false)) {
                return null;
            }
            Object v = map.get(key);
            if (!(v instanceof List)) {
                add(prefix + key + ": must be an array, got " + Json.typeName(v));
                return null;
            }
            List<Object> list = (List<Object>) v;
            if (list.size() < minItems || list.size() > maxItems) {
                add(prefix + key + ": must hold between " + minItems + " and " + maxItems + " items, got "
                        + list.size());
                return null;
            }
            return list;
        }

        @SuppressWarnings("unchecked")
        Map<String, Object> object(Map<String, Object> map, String prefix, String key, boolean nullable) {
            if (!present(map, prefix, key, nullable)) {
                return null;
            }
            Object v = map.get(key);
            if (!(v instanceof Map)) {
                add(prefix + key + ": must be an object, got " + Json.typeName(v));
                return null;
            }
            return (Map<String, Object>) v;
        }
    }

    private static final class Builder {
        int schemaVersion;
        String runId;
        String runSet;
        String createdAt;
        String modelName;
        String modelFile;
        Format format;
        String mode;
        String modelSha256;
        long modelBytes;
        Runtime runtime;
        int warmupRuns;
        int measuredRuns;
        double minDurationS;
        double cooldownS;
        Double timeoutS;
        Energy energy;
        Golden golden;
        String collectorUrl;
        String collectorToken;
        String resultFile;
        BudgetTrace budgetTrace;
    }

    /** Fields worth echoing in the result's model section. */
    public Map<String, Object> modelSection() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("name", modelName);
        m.put("file", modelFile);
        m.put("format", format.wireName());
        m.put("mode", mode);
        m.put("bytes", modelBytes);
        m.put("sha256", modelSha256);
        return m;
    }
}
