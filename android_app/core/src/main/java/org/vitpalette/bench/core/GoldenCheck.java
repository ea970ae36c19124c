package org.vitpalette.bench.core;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Compares the model's output on the golden input with the golden output, as numpy's
 * {@code allclose} does: |actual - expected| <= atol + rtol * |expected| for every element.
 * A NaN or infinity in the output fails the check.
 */
public final class GoldenCheck {
    public final boolean passed;
    /** Largest |actual - expected|; null when the sizes differ or a value is not finite. */
    public final Double maxAbsDiff;
    public final double atol;
    public final double rtol;
    /** Why it failed (first offending element, or the size mismatch); null when it passed. */
    public final String reason;

    private GoldenCheck(boolean passed, Double maxAbsDiff, double atol, double rtol, String reason) {
        this.passed = passed;
        this.maxAbsDiff = maxAbsDiff;
        this.atol = atol;
        this.rtol = rtol;
        this.reason = reason;
    }

    public static GoldenCheck compare(float[] expected, float[] actual, double atol, double rtol) {
        if (expected.length != actual.length) {
            return new GoldenCheck(false, null, atol, rtol, "the model gave " + actual.length
                    + " output values but the golden output has " + expected.length);
        }
        double max = 0;
        int firstBad = -1;
        for (int i = 0; i < expected.length; i++) {
            double e = expected[i];
            double a = actual[i];
            if (Double.isNaN(a) || Double.isInfinite(a)) {
                return new GoldenCheck(false, null, atol, rtol, "output[" + i + "] is " + a);
            }
            double diff = Math.abs(a - e);
            max = Math.max(max, diff);
            if (firstBad < 0 && !(diff <= atol + rtol * Math.abs(e))) {
                firstBad = i;
            }
        }
        if (firstBad >= 0) {
            return new GoldenCheck(false, max, atol, rtol, "output differs from the golden output: max |diff| "
                    + max + " > atol " + atol + " + rtol " + rtol + " * |expected| (first at index " + firstBad
                    + ": got " + actual[firstBad] + ", expected " + expected[firstBad] + ")");
        }
        return new GoldenCheck(true, max, atol, rtol, null);
    }

    /** The result document's golden section. */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("checked", true);
        // The schema wants a number for golden_mismatch; a non-finite output is reported as +inf-like max.
        m.put("max_abs_diff", maxAbsDiff == null ? (passed ? 0.0 : Double.MAX_VALUE) : maxAbsDiff);
        m.put("atol", atol);
        m.put("rtol", rtol);
        m.put("passed", passed);
        return m;
    }
}
