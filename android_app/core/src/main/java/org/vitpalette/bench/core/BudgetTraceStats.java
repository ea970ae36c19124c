package org.vitpalette.bench.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Frame-by-frame record of a budget-trace run and the result's {@code budget_trace} section.
 *
 * <p>A frame misses its deadline when its latency exceeds its budget; {@code nothing_fit} counts
 * frames where the selector found no configuration whose cost fits (the cheapest ran);
 * {@code switches} counts frames whose configuration differs from the previous frame's. The
 * per-frame list keeps the first {@link #MAX_FRAMES_KEPT} frames (the result schema's limit).
 * The simulated phone's app (device_runner/sim/benchmark_app.py) fills the same section.
 */
public final class BudgetTraceStats {
    /** The result schema's maxItems for budget_trace.per_frame. */
    public static final int MAX_FRAMES_KEPT = 10000;

    private final Map<String, Long> framesPerConfig = new LinkedHashMap<String, Long>();
    private final List<Map<String, Object>> perFrame = new ArrayList<Map<String, Object>>();
    private final List<Double> latencies = new ArrayList<Double>();
    private long misses;
    private long nothingFit;
    private long switches;
    private double accuracySum;
    private int previous = -1;

    /** Every configuration shows in frames_per_config, with 0 when it never ran. */
    public BudgetTraceStats(List<BudgetSelector.Entry> front) {
        for (BudgetSelector.Entry e : front) {
            framesPerConfig.put(e.name, 0L);
        }
    }

    /** Records one frame; returns whether it missed its deadline. */
    public boolean record(double budgetMs, BudgetSelector.Choice choice, double latencyMs) {
        boolean missed = latencyMs > budgetMs;
        if (missed) {
            misses++;
        }
        if (!choice.fits) {
            nothingFit++;
        }
        if (previous >= 0 && previous != choice.index) {
            switches++;
        }
        previous = choice.index;
        accuracySum += choice.entry.accuracy;
        Long n = framesPerConfig.get(choice.entry.name);
        framesPerConfig.put(choice.entry.name, n == null ? 1L : n + 1);
        latencies.add(latencyMs);
        if (perFrame.size() < MAX_FRAMES_KEPT) {
            Map<String, Object> f = new LinkedHashMap<String, Object>();
            f.put("budget_ms", budgetMs);
            f.put("config", choice.entry.name);
            f.put("latency_ms", latencyMs);
            f.put("missed", missed);
            perFrame.add(f);
        }
        return missed;
    }

    public int frames() {
        return latencies.size();
    }

    public long deadlineMisses() {
        return misses;
    }

    /** The per-frame latencies in order (the latency section's samples). */
    public double[] latenciesMs() {
        double[] out = new double[latencies.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = latencies.get(i);
        }
        return out;
    }

    /** The result's budget_trace section; null when no frame ran. */
    public Map<String, Object> toMap() {
        int n = frames();
        if (n == 0) {
            return null;
        }
        double[] lat = latenciesMs();
        double sum = 0;
        for (double v : lat) {
            sum += v;
        }
        double[] sorted = lat.clone();
        java.util.Arrays.sort(sorted);
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("frames", (long) n);
        m.put("deadline_misses", misses);
        m.put("nothing_fit", nothingFit);
        m.put("switches", switches);
        m.put("mean_accuracy", accuracySum / n);
        m.put("latency_mean_ms", sum / n);
        m.put("latency_p90_ms", RunStats.percentile(sorted, 90));
        m.put("frames_per_config", new LinkedHashMap<String, Object>(framesPerConfig));
        m.put("per_frame_truncated", n > perFrame.size());
        m.put("per_frame", new ArrayList<Object>(perFrame));
        return m;
    }
}
