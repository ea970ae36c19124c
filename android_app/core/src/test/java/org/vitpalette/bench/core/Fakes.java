package org.vitpalette.bench.core;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** Stand-ins for the phone: a clock that only moves when told, and fakes that fail loudly. */
final class Fakes {
    private Fakes() {
    }

    /** Platform on a fake clock; sleeping advances the clock instantly. */
    static final class FakePlatform implements Platform {
        long nanos = 1_000_000_000L;
        long wallMs = 1_795_000_000_000L;
        final List<Integer> thermal = new ArrayList<Integer>();
        int thermalReads;
        final List<String> logs = Collections.synchronizedList(new ArrayList<String>());
        final Path resultsDir;
        boolean simulated;

        FakePlatform(Path resultsDir) {
            this.resultsDir = resultsDir;
        }

        void advanceMs(double ms) {
            nanos += (long) (ms * 1e6);
            wallMs += (long) ms;
        }

        @Override
        public long elapsedNanos() {
            return nanos;
        }

        @Override
        public long wallClockMs() {
            return wallMs;
        }

        /** Statuses in order; the last one repeats. Null when none scripted (an API 28 phone). */
        @Override
        public Integer thermalStatus() {
            if (thermal.isEmpty()) {
                return null;
            }
            Integer v = thermal.get(Math.min(thermalReads, thermal.size() - 1));
            thermalReads++;
            return v;
        }

        @Override
        public DeviceInfo deviceInfo() {
            return new DeviceInfo("Pixel 8", "Google", "15", 35, "Tensor G3", "arm64-v8a", null, simulated,
                    "google/shiba/shiba:15/AP4A/1:user/release-keys", 9);
        }

        @Override
        public Long peakMemoryBytes() {
            return 123456789L;
        }

        @Override
        public String appVersion() {
            return "0.1.0 (1)";
        }

        @Override
        public Path defaultResultsDir() {
            return resultsDir;
        }

        @Override
        public void sleepMs(long ms) {
            if (ms <= 0) {
                throw new AssertionError("runner asked to sleep " + ms + " ms");
            }
            advanceMs(ms);
        }

        @Override
        public void log(String message) {
            logs.add(message);
        }
    }

    /** Hook called on every inference (to crash, cancel, heat up...). */
    interface OnRun {
        void onRun(int index) throws Exception;
    }

    /** A model: output[i] = 2 * input[i] over the first outputSize inputs; each run takes runMs. */
    static final class FakeSession implements ModelSession {
        final FakePlatform platform;
        final double runMs;
        final int[] shape;
        final int outputSize;
        final List<double[]> busy = new ArrayList<double[]>();
        OnRun onRun;
        int runs;
        boolean closed;

        FakeSession(FakePlatform platform, double runMs, int[] shape, int outputSize) {
            this.platform = platform;
            this.runMs = runMs;
            this.shape = shape;
            this.outputSize = outputSize;
        }

        @Override
        public String runtimeName() {
            return "onnxruntime";
        }

        @Override
        public String runtimeVersion() {
            return "1.20.0";
        }

        @Override
        public int[] inputShape() {
            return shape.clone();
        }

        @Override
        public float[] run(float[] input, int[] inShape) throws Exception {
            if (closed) {
                throw new AssertionError("run() after close()");
            }
            long n = 1;
            for (int d : inShape) {
                n *= d;
            }
            if (n != input.length) {
                throw new AssertionError("input length " + input.length + " does not match shape");
            }
            if (onRun != null) {
                onRun.onRun(runs);
            }
            runs++;
            double start = platform.nanos / 1e6;
            platform.advanceMs(runMs);
            busy.add(new double[] {start, platform.nanos / 1e6});
            float[] out = new float[outputSize];
            for (int i = 0; i < outputSize; i++) {
                out[i] = 2f * input[i % input.length];
            }
            return out;
        }

        @Override
        public void close() {
            closed = true;
        }

        boolean busyAt(double tMs) {
            for (double[] b : busy) {
                if (tMs >= b[0] && tMs <= b[1]) {
                    return true;
                }
            }
            return false;
        }
    }

    static final class FakeLoader implements ModelLoader {
        final FakeSession session;
        final Exception failure;
        int loads;

        FakeLoader(FakeSession session, Exception failure) {
            this.session = session;
            this.failure = failure;
        }

        @Override
        public ModelSession load(Job job) throws Exception {
            loads++;
            session.platform.advanceMs(40);
            if (failure != null) {
                throw failure;
            }
            return session;
        }
    }

    /**
     * Battery readings from a power model: busyMw while the fake session runs, idleMw otherwise,
     * reported like a vendor that uses mA and positive-while-discharging (or Android's uA/negative).
     */
    static class FakeSampler implements PowerSampler {
        final FakeSession session;
        final double idleMw;
        final double busyMw;
        final boolean vendorMaPositive;
        String unavailable;
        Double startMs;
        int intervalMs;
        boolean stopped;

        FakeSampler(FakeSession session, double idleMw, double busyMw, boolean vendorMaPositive) {
            this.session = session;
            this.idleMw = idleMw;
            this.busyMw = busyMw;
            this.vendorMaPositive = vendorMaPositive;
        }

        @Override
        public String unavailableReason() {
            return unavailable;
        }

        @Override
        public String method() {
            return "battery";
        }

        @Override
        public void start(int interval) {
            if (unavailable != null) {
                throw new AssertionError("start() on an unavailable sampler");
            }
            if (startMs != null) {
                throw new AssertionError("start() twice");
            }
            startMs = session.platform.nanos / 1e6;
            intervalMs = interval;
        }

        @Override
        public String countersNote() {
            if (!stopped) {
                throw new AssertionError("countersNote() before stop()");
            }
            return "charge counter 3000000 -> 2999000 uAh; energy counter unsupported";
        }

        @Override
        public List<EnergyIntegrator.Sample> stop() {
            if (startMs == null) {
                throw new AssertionError("stop() without start()");
            }
            if (stopped) {
                throw new AssertionError("stop() twice");
            }
            stopped = true;
            double end = session.platform.nanos / 1e6;
            double voltage = 3850;
            List<EnergyIntegrator.Sample> out = new ArrayList<EnergyIntegrator.Sample>();
            for (double t = startMs; t <= end; t += intervalMs) {
                double p = session.busyAt(t) ? busyMw : idleMw;
                double ua = p * 1e6 / voltage;
                double raw = vendorMaPositive ? ua / 1000.0 : -ua;
                out.add(new EnergyIntegrator.Sample(t, raw, voltage));
            }
            return out;
        }
    }
}
