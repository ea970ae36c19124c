package org.vitpalette.bench.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Energy of a measured window from battery current/voltage samples.
 *
 * <p>Power is integrated with the trapezoid rule over time (power linear between samples, held
 * flat before the first and after the last), an idle baseline (mean power over an idle window
 * measured before the run) is subtracted, and the rest is divided by the number of inferences.
 *
 * <p>Current readings are normalised first, because phones disagree: Android documents
 * {@code BATTERY_PROPERTY_CURRENT_NOW} in microamperes, negative while discharging, but some
 * vendors report milliamperes and some report discharge as positive. With {@code auto}, the unit
 * is guessed from magnitude (a median |reading| below {@link #MA_THRESHOLD} would be under 10 mA
 * in microamperes, far below any phone running a model with the screen on, so it is read as mA)
 * and the sign from the median reading (the runner makes sure the phone is not charging, so the
 * dominant sign is discharge). Explicit settings in the job override both guesses.
 *
 * <p>Units: current in the unit of the reading, voltage in mV, time in ms, power in mW
 * (uA * mV / 1e6), energy in mJ (mW * ms / 1e3).
 */
public final class EnergyIntegrator {
    /** Median |current| below this is read as mA under {@code current_unit: auto}. */
    public static final double MA_THRESHOLD = 10000;

    /** One raw reading, as the device reported it (unit and sign not yet normalised). */
    public static final class Sample {
        public final double tMs;
        public final double current;
        public final double voltageMv;

        public Sample(double tMs, double current, double voltageMv) {
            if (Double.isNaN(tMs) || Double.isInfinite(tMs)) {
                throw new IllegalArgumentException("sample time must be finite, got " + tMs);
            }
            if (Double.isNaN(current) || Double.isInfinite(current)) {
                throw new IllegalArgumentException("sample current must be finite, got " + current);
            }
            if (Double.isNaN(voltageMv) || voltageMv <= 0) {
                throw new IllegalArgumentException("sample voltage_mv must be > 0, got " + voltageMv);
            }
            this.tMs = tMs;
            this.current = current;
            this.voltageMv = voltageMv;
        }
    }

    /** The unit and sign actually used, and whether they were guessed. */
    public static final class Normalization {
        public final Job.CurrentUnit unit;
        public final Job.CurrentSign sign;
        public final boolean unitGuessed;
        public final boolean signGuessed;

        Normalization(Job.CurrentUnit unit, Job.CurrentSign sign, boolean unitGuessed, boolean signGuessed) {
            this.unit = unit;
            this.sign = sign;
            this.unitGuessed = unitGuessed;
            this.signGuessed = signGuessed;
        }

        /** Discharge current in uA (positive while the battery is being drained). */
        public double dischargeUa(double raw) {
            double ua = unit == Job.CurrentUnit.MA ? raw * 1000.0 : raw;
            return sign == Job.CurrentSign.POSITIVE_IS_DISCHARGE ? ua : -ua;
        }

        /** Current in uA with Android's sign (negative while discharging), as results store it. */
        public double androidUa(double raw) {
            return -dischargeUa(raw);
        }

        /** Power drawn from the battery in mW. */
        public double powerMw(Sample s) {
            return dischargeUa(s.current) * s.voltageMv / 1e6;
        }
    }

    /** The computed figures (all energies in mJ). */
    public static final class Report {
        public final Normalization normalization;
        public final double windowS;
        public final double idleBaselineS;
        /** Null when no idle window was measured. */
        public final Double idlePowerMw;
        public final double totalMj;
        /** Null when no idle window was measured. */
        public final Double idleMj;
        public final double netMj;
        /** Null when no inference ran in the window. */
        public final Double perInferenceMj;
        public final String note;
        private final List<Sample> windowSamples;
        private final double windowStartMs;

        Report(Normalization normalization, double windowS, double idleBaselineS, Double idlePowerMw, double totalMj,
                Double idleMj, double netMj, Double perInferenceMj, String note, List<Sample> windowSamples,
                double windowStartMs) {
            this.normalization = normalization;
            this.windowS = windowS;
            this.idleBaselineS = idleBaselineS;
            this.idlePowerMw = idlePowerMw;
            this.totalMj = totalMj;
            this.idleMj = idleMj;
            this.netMj = netMj;
            this.perInferenceMj = perInferenceMj;
            this.note = note;
            this.windowSamples = windowSamples;
            this.windowStartMs = windowStartMs;
        }

        /** The result document's energy section (method battery unless told otherwise). */
        public Map<String, Object> toMap(String method, int sampleIntervalMs) {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put("method", method);
            m.put("sample_interval_ms", (long) sampleIntervalMs);
            List<Object> samples = new ArrayList<Object>();
            for (Sample s : windowSamples) {
                Map<String, Object> row = new LinkedHashMap<String, Object>();
                row.put("t_ms", s.tMs - windowStartMs);
                row.put("current_ua", normalization.androidUa(s.current));
                row.put("voltage_mv", s.voltageMv);
                row.put("power_mw", normalization.powerMw(s));
                samples.add(row);
            }
            m.put("samples", samples);
            m.put("window_s", windowS);
            m.put("idle_baseline_s", idleBaselineS);
            m.put("idle_power_mw", idlePowerMw);
            m.put("total_mj", totalMj);
            m.put("idle_mj", idleMj);
            m.put("net_mj", netMj);
            m.put("per_inference_mj", perInferenceMj);
            m.put("current_unit", normalization.unit.wireName());
            m.put("current_sign", normalization.sign.wireName());
            m.put("rails", null);
            m.put("note", note);
            return m;
        }
    }

    private final Job.CurrentUnit unit;
    private final Job.CurrentSign sign;

    public EnergyIntegrator(Job.CurrentUnit unit, Job.CurrentSign sign) {
        if (unit == null || sign == null) {
            throw new IllegalArgumentException("current unit and sign are required (use AUTO to guess them)");
        }
        this.unit = unit;
        this.sign = sign;
    }

    /** An integrator with the job's energy settings. */
    public static EnergyIntegrator forJob(Job.Energy energy) {
        return new EnergyIntegrator(energy.currentUnit, energy.currentSign);
    }

    /** Decides unit and sign for these readings (explicit settings win over guesses). */
    public Normalization normalization(List<Sample> samples) {
        double[] raw = new double[samples.size()];
        for (int i = 0; i < raw.length; i++) {
            raw[i] = samples.get(i).current;
        }
        Job.CurrentUnit u = unit;
        boolean unitGuessed = false;
        if (u == Job.CurrentUnit.AUTO) {
            unitGuessed = true;
            double[] abs = new double[raw.length];
            for (int i = 0; i < raw.length; i++) {
                abs[i] = Math.abs(raw[i]);
            }
            u = raw.length > 0 && median(abs) < MA_THRESHOLD ? Job.CurrentUnit.MA : Job.CurrentUnit.UA;
        }
        Job.CurrentSign s = sign;
        boolean signGuessed = false;
        if (s == Job.CurrentSign.AUTO) {
            signGuessed = true;
            s = raw.length > 0 && median(raw) > 0 ? Job.CurrentSign.POSITIVE_IS_DISCHARGE
                    : Job.CurrentSign.NEGATIVE_IS_DISCHARGE;
        }
        return new Normalization(u, s, unitGuessed, signGuessed);
    }

    /**
     * Energy over [windowStartMs, windowEndMs] with the idle baseline taken from
     * [idleStartMs, idleEndMs] (pass an empty idle window, start == end, for none).
     *
     * @param samples every reading of the idle and measured phases, any order, times on one clock
     * @param inferences number of inferences run inside the window
     */
    public Report integrate(List<Sample> samples, double idleStartMs, double idleEndMs, double windowStartMs,
            double windowEndMs, long inferences) {
        if (samples == null || samples.isEmpty()) {
            throw new IllegalArgumentException("no power samples to integrate; the sampler recorded nothing");
        }
        if (!(windowEndMs > windowStartMs)) {
            throw new IllegalArgumentException("measured window must have a positive length, got "
                    + windowStartMs + ".." + windowEndMs + " ms");
        }
        if (idleEndMs < idleStartMs) {
            throw new IllegalArgumentException("idle window ends before it starts: " + idleStartMs + ".." + idleEndMs);
        }
        if (inferences < 0) {
            throw new IllegalArgumentException("inferences must be >= 0, got " + inferences);
        }
        List<Sample> sorted = new ArrayList<Sample>(samples);
        Collections.sort(sorted, new Comparator<Sample>() {
            @Override
            public int compare(Sample a, Sample b) {
                return Double.compare(a.tMs, b.tMs);
            }
        });
        Normalization norm = normalization(sorted);
        double[] t = new double[sorted.size()];
        double[] p = new double[sorted.size()];
        for (int i = 0; i < t.length; i++) {
            t[i] = sorted.get(i).tMs;
            p[i] = norm.powerMw(sorted.get(i));
        }
        double windowMs = windowEndMs - windowStartMs;
        double totalMj = trapezoidMj(t, p, windowStartMs, windowEndMs);
        StringBuilder note = new StringBuilder();
        note.append("battery current x voltage, trapezoid over ").append(t.length).append(" samples");
        if (norm.unitGuessed || norm.signGuessed) {
            note.append("; guessed from the readings:");
            if (norm.unitGuessed) {
                note.append(" unit ").append(norm.unit.wireName());
            }
            if (norm.signGuessed) {
                note.append(" sign ").append(norm.sign.wireName());
            }
        }
        Double idlePowerMw = null;
        Double idleMj = null;
        double netMj = totalMj;
        double idleS = (idleEndMs - idleStartMs) / 1000.0;
        if (idleEndMs > idleStartMs) {
            idlePowerMw = trapezoidMj(t, p, idleStartMs, idleEndMs) * 1000.0 / (idleEndMs - idleStartMs);
            idleMj = idlePowerMw * windowMs / 1000.0;
            netMj = totalMj - idleMj;
            if (netMj < 0) {
                note.append("; net energy is below the idle baseline: the run's extra power is within the noise");
            }
        } else {
            note.append("; no idle baseline measured, figures are gross (idle power included)");
        }
        if (windowMs < 5000) {
            note.append("; window shorter than 5 s: the fuel gauge updates about once a second, expect noise");
        }
        Double perInference = inferences > 0 ? netMj / inferences : null;
        List<Sample> inWindow = new ArrayList<Sample>();
        for (Sample s : sorted) {
            if (s.tMs >= windowStartMs && s.tMs <= windowEndMs) {
                inWindow.add(s);
            }
        }
        return new Report(norm, windowMs / 1000.0, idleS, idlePowerMw, totalMj, idleMj, netMj, perInference,
                note.toString(), inWindow, windowStartMs);
    }

    /**
     * Integral in mJ of power (mW, piecewise linear through (t, p), flat outside) from startMs to
     * endMs. Exact for piecewise-linear power: breakpoints are the window ends and the sample times.
     */
    public static double trapezoidMj(double[] tMs, double[] powerMw, double startMs, double endMs) {
        if (tMs.length != powerMw.length || tMs.length == 0) {
            throw new IllegalArgumentException("need matching, non-empty time and power arrays");
        }
        if (endMs <= startMs) {
            return 0;
        }
        List<Double> points = new ArrayList<Double>();
        points.add(startMs);
        for (double ti : tMs) {
            if (ti > startMs && ti < endMs) {
                points.add(ti);
            }
        }
        points.add(endMs);
        double sumMwMs = 0;
        double prevT = points.get(0);
        double prevP = valueAt(tMs, powerMw, prevT);
        for (int i = 1; i < points.size(); i++) {
            double ti = points.get(i);
            double pi = valueAt(tMs, powerMw, ti);
            sumMwMs += (prevP + pi) / 2.0 * (ti - prevT);
            prevT = ti;
            prevP = pi;
        }
        return sumMwMs / 1000.0;
    }

    /** Piecewise-linear value at time t (t ascending), held flat outside the samples. */
    static double valueAt(double[] t, double[] v, double at) {
        if (at <= t[0]) {
            return v[0];
        }
        int last = t.length - 1;
        if (at >= t[last]) {
            return v[last];
        }
        int idx = Arrays.binarySearch(t, at);
        if (idx >= 0) {
            return v[idx];
        }
        int hi = -idx - 1;
        int lo = hi - 1;
        double span = t[hi] - t[lo];
        if (span <= 0) {
            return v[hi];
        }
        return v[lo] + (v[hi] - v[lo]) * (at - t[lo]) / span;
    }

    private static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        return RunStats.percentile(sorted, 50);
    }

    /**
     * Battery voltage in mV from ACTION_BATTERY_CHANGED's EXTRA_VOLTAGE, which is documented in mV
     * but reported in V by some devices and in uV by others; a Li-ion cell sits near 3-4.5 V.
     * Returns NaN when the reading makes no sense in any of those units.
     */
    public static double normalizeVoltageMv(double raw) {
        if (Double.isNaN(raw) || raw <= 0) {
            return Double.NaN;
        }
        if (raw < 20) {
            return raw * 1000.0; // volts
        }
        if (raw > 100000) {
            return raw / 1000.0; // microvolts
        }
        return raw < 1000 ? Double.NaN : raw;
    }

    /** The energy section when nothing usable could be measured. */
    public static Map<String, Object> noneSection(int sampleIntervalMs, String why) {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("method", "none");
        m.put("sample_interval_ms", (long) sampleIntervalMs);
        m.put("samples", new ArrayList<Object>());
        m.put("window_s", null);
        m.put("idle_baseline_s", null);
        m.put("idle_power_mw", null);
        m.put("total_mj", null);
        m.put("idle_mj", null);
        m.put("net_mj", null);
        m.put("per_inference_mj", null);
        m.put("current_unit", null);
        m.put("current_sign", null);
        m.put("rails", null);
        m.put("note", why);
        return m;
    }
}
