package org.vitpalette.bench.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Latency statistics of one run: init, first inference, warm-up count and the measured samples.
 *
 * <p>Definitions (chosen to match numpy, so the simulated phone and the app agree to the last
 * digit): percentiles interpolate linearly between order statistics (numpy's default "linear"
 * method); std is the population standard deviation (ddof = 0); the trimmed mean drops
 * floor(10% of n) samples at each end, as ExecuTorch's benchmark app does, so nothing is dropped
 * below 10 samples.
 */
public final class RunStats {
    /** Fraction of samples dropped at each end for the trimmed mean. */
    public static final double TRIM_FRACTION = 0.10;

    public final double initMs;
    public final double firstMs;
    public final int warmupRuns;
    private final double[] samplesMs;
    public final double meanMs;
    public final double medianMs;
    public final double p90Ms;
    public final double p99Ms;
    public final double stdMs;
    public final double trimmedMeanMs;
    public final double minMs;
    public final double maxMs;
    /** Wall time of the measured loop, or null when unknown. */
    public final Double measuredS;

    private RunStats(double initMs, double firstMs, int warmupRuns, double[] samplesMs, Double measuredS) {
        this.initMs = initMs;
        this.firstMs = firstMs;
        this.warmupRuns = warmupRuns;
        this.samplesMs = samplesMs.clone();
        this.measuredS = measuredS;
        double[] sorted = samplesMs.clone();
        Arrays.sort(sorted);
        double sum = 0;
        for (double v : sorted) {
            sum += v;
        }
        this.meanMs = sum / sorted.length;
        double sq = 0;
        for (double v : sorted) {
            sq += (v - meanMs) * (v - meanMs);
        }
        this.stdMs = Math.sqrt(sq / sorted.length);
        this.medianMs = percentile(sorted, 50);
        this.p90Ms = percentile(sorted, 90);
        this.p99Ms = percentile(sorted, 99);
        this.trimmedMeanMs = trimmedMean(sorted, TRIM_FRACTION);
        this.minMs = sorted[0];
        this.maxMs = sorted[sorted.length - 1];
    }

    /**
     * Builds the statistics; every time must be finite and >= 0 and there must be at least one
     * measured sample.
     */
    public static RunStats of(double initMs, double firstMs, int warmupRuns, double[] samplesMs, Double measuredS) {
        if (samplesMs == null || samplesMs.length == 0) {
            throw new IllegalArgumentException("no measured samples: at least one timed run is needed for statistics");
        }
        checkTime("init_ms", initMs);
        checkTime("first_ms", firstMs);
        if (warmupRuns < 0) {
            throw new IllegalArgumentException("warmup_runs must be >= 0, got " + warmupRuns);
        }
        for (int i = 0; i < samplesMs.length; i++) {
            checkTime("samples_ms[" + i + "]", samplesMs[i]);
        }
        if (measuredS != null) {
            checkTime("measured_s", measuredS);
        }
        return new RunStats(initMs, firstMs, warmupRuns, samplesMs, measuredS);
    }

    private static void checkTime(String name, double v) {
        if (Double.isNaN(v) || Double.isInfinite(v) || v < 0) {
            throw new IllegalArgumentException(name + " must be a finite time >= 0, got " + v);
        }
    }

    /** Number of measured samples. */
    public int runs() {
        return samplesMs.length;
    }

    /** A copy of the samples in the order they were measured. */
    public double[] samplesMs() {
        return samplesMs.clone();
    }

    /** Linear-interpolated percentile q (0..100) of an ascending array (numpy's default method). */
    public static double percentile(double[] sorted, double q) {
        if (sorted.length == 0) {
            throw new IllegalArgumentException("percentile of no values");
        }
        if (q < 0 || q > 100) {
            throw new IllegalArgumentException("percentile must be in 0..100, got " + q);
        }
        double pos = (sorted.length - 1) * q / 100.0;
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, sorted.length - 1);
        double frac = pos - lo;
        double v = sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
        // Rounding must never put a percentile outside its two neighbours (median <= max, ...).
        return Math.min(Math.max(v, sorted[lo]), sorted[hi]);
    }

    /** Mean of an ascending array after dropping floor(fraction * n) values at each end. */
    public static double trimmedMean(double[] sorted, double fraction) {
        // The epsilon keeps n * 0.1 from flooring to one less when n is a multiple of 10.
        int drop = (int) Math.floor(sorted.length * fraction + 1e-9);
        double sum = 0;
        int n = 0;
        for (int i = drop; i < sorted.length - drop; i++) {
            sum += sorted[i];
            n++;
        }
        return sum / n;
    }

    /** The result document's latency section. */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("init_ms", initMs);
        m.put("first_ms", firstMs);
        m.put("warmup_runs", (long) warmupRuns);
        m.put("runs", (long) samplesMs.length);
        List<Object> samples = new ArrayList<Object>(samplesMs.length);
        for (double v : samplesMs) {
            samples.add(v);
        }
        m.put("samples_ms", samples);
        m.put("mean_ms", meanMs);
        m.put("median_ms", medianMs);
        m.put("p90_ms", p90Ms);
        m.put("p99_ms", p99Ms);
        m.put("std_ms", stdMs);
        m.put("trimmed_mean_ms", trimmedMeanMs);
        m.put("min_ms", minMs);
        m.put("max_ms", maxMs);
        if (measuredS != null) {
            m.put("measured_s", measuredS);
        }
        return m;
    }
}
