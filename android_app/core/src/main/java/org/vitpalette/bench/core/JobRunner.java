package org.vitpalette.bench.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Runs one job from start to result: read the job, cool down, measure the idle baseline, load
 * the model, check the golden pair, warm up, time the measured loop, integrate energy, write the
 * result file and POST it.
 *
 * <p>The app only supplies the {@link Platform}, the {@link ModelLoader} and the
 * {@link PowerSampler}; all decisions live here so the host tests exercise the same code the
 * phone runs. {@link #run(Path)} never throws: every failure, including an OutOfMemoryError,
 * ends as a result document with a status and the error text.
 */
public final class JobRunner {
    /** Thermal status at or above this (THERMAL_STATUS_SEVERE) stops the run: thermal_abort. */
    public static final int THERMAL_ABORT_AT = 3;
    /** How often the loops look at the thermal status, the deadline and cancellation. */
    static final long CHECK_EVERY_MS = 1000;

    /** What a run produced. */
    public static final class Outcome {
        public final Status status;
        /** Where the result was written, or null when even that failed. */
        public final Path resultPath;
        /** The result document; null only when it could not be built. */
        public final Map<String, Object> document;
        /** Why posting to the collector failed, or null (posted, or no collector). */
        public final String postError;
        public final boolean posted;

        Outcome(Status status, Path resultPath, Map<String, Object> document, String postError, boolean posted) {
            this.status = status;
            this.resultPath = resultPath;
            this.document = document;
            this.postError = postError;
            this.posted = posted;
        }
    }

    /** A stop signal from inside the run: a status and its error text. */
    static final class Stop extends Exception {
        private static final long serialVersionUID = 1L;
        final Status status;

        Stop(Status status, String message) {
            super(message);
            this.status = status;
        }
    }

    private final Platform platform;
    private final ModelLoader loader;
    private final PowerSampler sampler;
    private final CollectorClient collector;
    private volatile boolean cancelled;

    public JobRunner(Platform platform, ModelLoader loader, PowerSampler sampler, CollectorClient collector) {
        if (platform == null || loader == null || sampler == null || collector == null) {
            throw new IllegalArgumentException("platform, loader, sampler and collector are all required");
        }
        this.platform = platform;
        this.loader = loader;
        this.sampler = sampler;
        this.collector = collector;
    }

    /** Asks a running job to stop at its next check; it ends with status cancelled. */
    public void cancel() {
        cancelled = true;
    }

    private double nowMs() {
        return platform.elapsedNanos() / 1e6;
    }

    /** Runs the job at {@code jobPath}; see the class comment. */
    public Outcome run(Path jobPath) {
        long startedWall = platform.wallClockMs();
        Job job;
        try {
            job = Job.load(jobPath);
        } catch (JobException e) {
            return finishInvalidJob(jobPath, e, startedWall);
        } catch (Throwable t) {
            return finishInvalidJob(jobPath, new JobException(String.valueOf(jobPath), t.toString(), t), startedWall);
        }
        ResultWriter result = new ResultWriter(job.runId).runSet(job.runSet).startedAtMs(startedWall)
                .model(job.modelSection());
        try {
            result.appVersion(platform.appVersion());
            result.device(safeDevice());
            execute(job, result);
        } catch (Stop stop) {
            result.status(stop.status).error(stop.getMessage());
        } catch (Throwable t) {
            // OutOfMemoryError included: the session is closed by now, so there is room to report it.
            result.status(Status.CRASHED).error(ResultWriter.describe(t));
        }
        return finish(job, result);
    }

    private DeviceInfo safeDevice() {
        try {
            return platform.deviceInfo();
        } catch (RuntimeException e) {
            platform.log("device info unavailable: " + e);
            return new DeviceInfo("unknown", "", "", 1, null, "", null, false, null, null);
        }
    }

    /** The measured part; fills {@code result} and leaves its status set. */
    private void execute(Job job, ResultWriter result) throws Exception {
        double t0 = nowMs();
        double deadlineMs = job.timeoutS == null ? Double.POSITIVE_INFINITY : t0 + job.timeoutS * 1000.0;
        // A placeholder runtime section until the session says its name and version.
        String runtimeName = job.format == Job.Format.ONNX ? "onnxruntime" : "litert";
        result.runtime(runtimeName, null, job.runtime.threads, job.runtime.delegate, null);
        Integer before = platform.thermalStatus();
        result.thermal(before, null);
        String energyProblem = sampler.unavailableReason();
        boolean sampling = false;
        ModelSession session = null;
        List<ModelSession> extraSessions = new ArrayList<ModelSession>();
        BudgetTraceStats trace = null;
        List<EnergyIntegrator.Sample> power = null;
        try {
            if (job.cooldownS > 0) {
                platform.log("cooling down for " + job.cooldownS + " s");
                sleepChecked(job.cooldownS * 1000.0, deadlineMs);
            }
            Integer afterCooldown = platform.thermalStatus();
            if (afterCooldown != null && afterCooldown >= THERMAL_ABORT_AT) {
                throw new Stop(Status.THERMAL_ABORT, "thermal status " + afterCooldown + " (>= " + THERMAL_ABORT_AT
                        + ", severe) before the run; let the phone cool down or raise cooldown_s");
            }
            if (energyProblem == null) {
                sampler.start(job.energy.sampleIntervalMs);
                sampling = true;
            }
            double idleStart = nowMs();
            if (job.energy.idleBaselineS > 0) {
                sleepChecked(job.energy.idleBaselineS * 1000.0, deadlineMs);
            }
            double idleEnd = nowMs();

            try {
                ModelFileCheck.verify(Paths.get(job.modelFile), job.modelBytes, job.modelSha256);
            } catch (BenchException e) {
                throw new Stop(Status.LOAD_FAILED, e.describe());
            }
            double loadStart = nowMs();
            try {
                session = loader.load(job);
            } catch (Exception e) {
                throw new Stop(Status.LOAD_FAILED, "could not load " + job.modelFile + " with "
                        + runtimeName + " (delegate " + job.runtime.delegate.wireName() + ", "
                        + job.runtime.threads + " threads): " + ResultWriter.describe(e));
            }
            double initMs = nowMs() - loadStart;
            result.runtime(session.runtimeName(), session.runtimeVersion(), job.runtime.threads,
                    job.runtime.delegate, null);

            float[] input;
            int[] shape;
            Npy.Array goldenOut = null;
            if (job.golden != null) {
                Npy.Array goldenIn;
                try {
                    goldenIn = Npy.readFloat32(Paths.get(job.golden.inputFile));
                    goldenOut = Npy.readFloat32(Paths.get(job.golden.outputFile));
                } catch (BenchException e) {
                    throw new Stop(Status.LOAD_FAILED, e.describe());
                }
                input = goldenIn.data;
                shape = goldenIn.shape;
            } else {
                shape = session.inputShape();
                input = syntheticInput(shape);
            }
            double firstStart = nowMs();
            float[] firstOut = session.run(input, shape);
            double firstMs = nowMs() - firstStart;
            if (goldenOut != null) {
                GoldenCheck golden = GoldenCheck.compare(goldenOut.data, firstOut, job.golden.atol, job.golden.rtol);
                result.golden(golden.toMap());
                if (!golden.passed) {
                    throw new Stop(Status.GOLDEN_MISMATCH, "golden check failed for " + job.modelFile + ": "
                            + golden.reason + "; nothing was timed (re-export the bundle or loosen atol/rtol)");
                }
            }

            List<Double> samples = new ArrayList<Double>();
            Stop stopped = null;
            double lastCheck = nowMs();
            double windowStart;
            if (job.budgetTrace != null) {
                // Dynamic execution: every configuration loaded and warmed up, then one frame per budget.
                List<ModelSession> configs = loadConfigurations(job, session, extraSessions);
                int n = configs.size();
                float[][] inputs = new float[n][];
                int[][] shapes = new int[n][];
                for (int c = 0; c < n; c++) {
                    int[] own = configs.get(c).inputShape();
                    boolean same = java.util.Arrays.equals(own, shape);
                    shapes[c] = same ? shape : own;
                    inputs[c] = same ? input : syntheticInput(own);
                }
                for (int c = 0; c < n && stopped == null; c++) {
                    for (int i = 0; i < job.warmupRuns && stopped == null; i++) {
                        configs.get(c).run(inputs[c], shapes[c]);
                        boolean thermalDue = nowMs() - lastCheck >= CHECK_EVERY_MS;
                        if (thermalDue) {
                            lastCheck = nowMs();
                        }
                        stopped = check(deadlineMs, "warm-up", thermalDue);
                    }
                }
                BudgetSelector selector = new BudgetSelector(job.budgetTrace.front());
                trace = new BudgetTraceStats(selector.front());
                windowStart = nowMs();
                for (int i = 0; i < job.budgetTrace.frames && stopped == null; i++) {
                    double budget = job.budgetTrace.budgetMs(i);
                    BudgetSelector.Choice choice = selector.select(budget);
                    double s = nowMs();
                    configs.get(choice.index).run(inputs[choice.index], shapes[choice.index]);
                    double ms = nowMs() - s;
                    samples.add(ms);
                    trace.record(budget, choice, ms);
                    boolean thermalDue = nowMs() - lastCheck >= CHECK_EVERY_MS;
                    if (thermalDue) {
                        lastCheck = nowMs();
                    }
                    stopped = check(deadlineMs, "budget trace", thermalDue);
                }
            } else {
                for (int i = 0; i < job.warmupRuns && stopped == null; i++) {
                    session.run(input, shape);
                    boolean thermalDue = nowMs() - lastCheck >= CHECK_EVERY_MS || i == job.warmupRuns - 1;
                    if (thermalDue) {
                        lastCheck = nowMs();
                    }
                    stopped = check(deadlineMs, "warm-up", thermalDue);
                }
                windowStart = nowMs();
                while (stopped == null) {
                    double elapsedS = (nowMs() - windowStart) / 1000.0;
                    if (samples.size() >= job.measuredRuns && elapsedS >= job.minDurationS) {
                        break;
                    }
                    double s = nowMs();
                    session.run(input, shape);
                    samples.add(nowMs() - s);
                    boolean thermalDue = nowMs() - lastCheck >= CHECK_EVERY_MS;
                    if (thermalDue) {
                        lastCheck = nowMs();
                    }
                    stopped = check(deadlineMs, "measured loop", thermalDue);
                }
            }
            double windowEnd = nowMs();
            session.close();
            session = null;
            closeAll(extraSessions);
            if (sampling) {
                power = sampler.stop();
                sampling = false;
            }
            if (!samples.isEmpty()) {
                double[] arr = new double[samples.size()];
                for (int i = 0; i < arr.length; i++) {
                    arr[i] = samples.get(i);
                }
                result.latency(RunStats.of(initMs, firstMs, job.warmupRuns, arr, (windowEnd - windowStart) / 1000.0));
                if (trace != null) {
                    result.budgetTrace(trace.toMap());
                }
            }
            try {
                result.energy(energySection(job, energyProblem, power, idleStart, idleEnd, windowStart, windowEnd,
                        samples.size()));
            } catch (RuntimeException e) {
                // Bad readings must not turn a good latency run into a crash.
                platform.log("energy could not be computed: " + e);
                result.energy(EnergyIntegrator.noneSection(job.energy.sampleIntervalMs,
                        DeviceInfo.clip("energy could not be computed from the readings: " + e, 2000)));
            }
            if (stopped != null) {
                throw stopped;
            }
            result.status(Status.OK).error(null);
        } finally {
            if (session != null) {
                session.close();
            }
            closeAll(extraSessions);
            if (sampling) {
                try {
                    sampler.stop();
                } catch (RuntimeException e) {
                    platform.log("power sampler failed to stop: " + e);
                }
            }
            result.thermal(before, platform.thermalStatus());
            result.peakMemoryBytes(platform.peakMemoryBytes());
        }
    }

    /**
     * One session per budget-trace configuration, in the job's order: the main session for the
     * configuration whose file is the job's model file, otherwise the file's sha256 is checked and
     * the loader opens it (each file once). New sessions go to {@code opened} for closing.
     */
    private List<ModelSession> loadConfigurations(Job job, ModelSession main, List<ModelSession> opened)
            throws Stop {
        Map<String, ModelSession> byFile = new java.util.HashMap<String, ModelSession>();
        byFile.put(job.modelFile, main);
        List<ModelSession> out = new ArrayList<ModelSession>();
        for (Job.TraceConfig c : job.budgetTrace.configurations) {
            ModelSession s = byFile.get(c.file);
            if (s == null) {
                String what = "budget trace configuration \"" + c.name + "\": ";
                Path file = Paths.get(c.file);
                String push = "; push every configuration bundle again (the host runner checks sha256 after pushing)";
                String sha;
                try {
                    if (!Files.isRegularFile(file)) {
                        throw new Stop(Status.LOAD_FAILED, what + "file " + c.file + " does not exist on the device"
                                + push);
                    }
                    sha = ModelFileCheck.sha256(file);
                } catch (IOException e) {
                    throw new Stop(Status.LOAD_FAILED, what + "cannot read " + c.file + ": " + e + push);
                }
                if (!sha.equals(c.sha256)) {
                    throw new Stop(Status.LOAD_FAILED, what + "file " + c.file + " has sha256 " + sha
                            + ", the job expects " + c.sha256 + push);
                }
                Job cfgJob = job.forConfiguration(c);
                try {
                    s = loader.load(cfgJob);
                } catch (Exception e) {
                    throw new Stop(Status.LOAD_FAILED, what + "could not load " + c.file + " ("
                            + cfgJob.format.wireName() + ", delegate " + job.runtime.delegate.wireName() + ", "
                            + job.runtime.threads + " threads): " + ResultWriter.describe(e));
                }
                opened.add(s);
                byFile.put(c.file, s);
            }
            out.add(s);
        }
        return out;
    }

    private static void closeAll(List<ModelSession> sessions) {
        for (ModelSession s : sessions) {
            s.close();
        }
        sessions.clear();
    }

    private Map<String, Object> energySection(Job job, String problem, List<EnergyIntegrator.Sample> power,
            double idleStart, double idleEnd, double windowStart, double windowEnd, int inferences) {
        if (problem != null) {
            return EnergyIntegrator.noneSection(job.energy.sampleIntervalMs, problem);
        }
        if (power == null || power.isEmpty()) {
            return EnergyIntegrator.noneSection(job.energy.sampleIntervalMs,
                    "the power sampler recorded no readings during the run");
        }
        if (!(windowEnd > windowStart)) {
            return EnergyIntegrator.noneSection(job.energy.sampleIntervalMs, "the measured window has no length");
        }
        EnergyIntegrator.Report report = EnergyIntegrator.forJob(job.energy).integrate(power, idleStart, idleEnd,
                windowStart, windowEnd, inferences);
        Map<String, Object> section = report.toMap(sampler.method(), job.energy.sampleIntervalMs);
        String counters = sampler.countersNote();
        if (counters != null && !counters.isEmpty()) {
            section.put("note", DeviceInfo.clip(section.get("note") + "; " + counters, 2000));
        }
        return section;
    }

    /**
     * Cancellation and the deadline (cheap, after every inference) and, when {@code thermal} is
     * set, the thermal status (a binder call on the phone, so about once a second).
     */
    private Stop check(double deadlineMs, String phase, boolean thermal) {
        if (cancelled) {
            return new Stop(Status.CANCELLED, "cancelled during the " + phase);
        }
        if (nowMs() > deadlineMs) {
            return new Stop(Status.TIMEOUT, "timeout_s reached during the " + phase
                    + "; raise timeout_s or lower measured_runs/min_duration_s");
        }
        Integer status = thermal ? platform.thermalStatus() : null;
        if (status != null && status >= THERMAL_ABORT_AT) {
            return new Stop(Status.THERMAL_ABORT, "thermal status " + status + " (>= " + THERMAL_ABORT_AT
                    + ", severe) during the " + phase + "; figures so far are kept, let the phone cool down");
        }
        return null;
    }

    private void sleepChecked(double ms, double deadlineMs) throws Stop, InterruptedException {
        double end = nowMs() + ms;
        while (true) {
            double left = end - nowMs();
            if (left <= 0) {
                return;
            }
            Stop stop = check(deadlineMs, "wait", false);
            if (stop != null) {
                throw stop;
            }
            platform.sleepMs((long) Math.ceil(Math.min(left, 200)));
        }
    }

    /** Deterministic input in [-1, 1) when the job has no golden pair (seed 0, same on every phone). */
    static float[] syntheticInput(int[] shape) {
        long n = 1;
        for (int d : shape) {
            n *= Math.max(d, 1);
        }
        if (n > Integer.MAX_VALUE / 4) {
            throw new IllegalArgumentException("model input " + Npy.shapeText(shape) + " is too large");
        }
        Random rnd = new Random(0);
        float[] x = new float[(int) n];
        for (int i = 0; i < x.length; i++) {
            x[i] = rnd.nextFloat() * 2f - 1f;
        }
        return x;
    }

    private Outcome finishInvalidJob(Path jobPath, JobException e, long startedWall) {
        Map<String, Object> raw = null;
        try {
            raw = Json.parseObject(new String(Files.readAllBytes(jobPath), StandardCharsets.UTF_8));
        } catch (IOException | JsonException | RuntimeException ignored) {
            // The job is unreadable; the fallback run id says so.
        }
        String runId = ResultWriter.fallbackRunId(raw, String.valueOf(jobPath), startedWall);
        ResultWriter result = new ResultWriter(runId).status(Status.INVALID_JOB).startedAtMs(startedWall)
                .error(e.describe());
        try {
            result.appVersion(platform.appVersion());
        } catch (RuntimeException ignored) {
            // optional
        }
        result.device(safeDevice());
        return finish(null, result);
    }

    /** Writes the result, then POSTs it; a failure to post is logged and returned, never thrown. */
    private Outcome finish(Job job, ResultWriter result) {
        result.finishedAtMs(platform.wallClockMs());
        Map<String, Object> doc;
        String text;
        try {
            doc = result.toMap();
            text = Json.writePretty(doc);
        } catch (RuntimeException e) {
            platform.log("could not build the result: " + e);
            return new Outcome(Status.CRASHED, null, null, null, false);
        }
        Path fallback = platform.defaultResultsDir().resolve(result.runId() + ".json");
        Path target = job != null && job.resultFile != null ? Paths.get(job.resultFile) : fallback;
        Path written = null;
        try {
            ResultWriter.writeAtomically(target, text);
            written = target;
            platform.log("result " + result.status().wireName() + " written to " + target);
        } catch (IOException | RuntimeException e) {
            platform.log("could not write the result to " + target + ": " + e);
            if (!target.equals(fallback)) {
                // The app may write only its own folders: keep the result where the host looks next.
                try {
                    ResultWriter.writeAtomically(fallback, text);
                    written = fallback;
                    platform.log("result " + result.status().wireName() + " written to " + fallback + " instead");
                } catch (IOException | RuntimeException e2) {
                    platform.log("could not write the result to " + fallback + " either: " + e2);
                }
            }
        }
        String endpoint = job == null ? null : job.collectorResultsEndpoint();
        if (endpoint == null) {
            return new Outcome(result.status(), written, doc, null, false);
        }
        try {
            collector.post(endpoint, text, job.collectorToken);
            platform.log("result posted to " + endpoint);
            return new Outcome(result.status(), written, doc, null, true);
        } catch (CollectorException e) {
            platform.log(e.describe());
            return new Outcome(result.status(), written, doc, e.describe(), false);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Outcome(result.status(), written, doc, "interrupted while posting", false);
        }
    }
}
