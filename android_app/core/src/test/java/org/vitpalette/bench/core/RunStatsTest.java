package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.Test;

public class RunStatsTest {
    private static final double EPS = 1e-9;

    @Test
    public void matchesNumpyDefinitions() {
        // numpy: percentile(linear) 50/90/99 = 12.35/12.96/13.446, std(ddof=0) = 0.41904...
        double[] s = {12.4, 12.1, 12.9, 12.3, 12.2, 13.5, 12.0, 12.6, 12.3, 12.5};
        RunStats r = RunStats.of(85.2, 20.1, 5, s, 2.41);
        assertEquals(12.48, r.meanMs, EPS);
        assertEquals(12.35, r.medianMs, EPS);
        assertEquals(12.96, r.p90Ms, EPS);
        assertEquals(13.446, r.p99Ms, EPS);
        assertEquals(Math.sqrt(0.1756), r.stdMs, EPS);
        assertEquals(99.3 / 8, r.trimmedMeanMs, EPS);
        assertEquals(12.0, r.minMs, 0);
        assertEquals(13.5, r.maxMs, 0);
        assertEquals(10, r.runs());
        // Samples keep their measured order.
        assertEquals(12.4, r.samplesMs()[0], 0);
    }

    @Test
    public void invariantsHoldOnRandomSamples() {
        Random rnd = new Random(1);
        for (int trial = 0; trial < 200; trial++) {
            int n = 1 + rnd.nextInt(300);
            double[] s = new double[n];
            for (int i = 0; i < n; i++) {
                s[i] = rnd.nextDouble() < 0.05 ? 100 + rnd.nextDouble() * 1000 : 5 + rnd.nextGaussian() * 0.3 + 1;
                s[i] = Math.abs(s[i]);
            }
            RunStats r = RunStats.of(1, 1, 0, s, null);
            assertTrue(r.minMs <= r.medianMs && r.medianMs <= r.p90Ms && r.p90Ms <= r.p99Ms && r.p99Ms <= r.maxMs);
            assertTrue(r.minMs <= r.meanMs && r.meanMs <= r.maxMs);
            assertTrue(r.minMs <= r.trimmedMeanMs && r.trimmedMeanMs <= r.maxMs);
            assertTrue(r.stdMs >= 0);
            // Shuffling the samples changes nothing but their order.
            double[] shuffled = s.clone();
            for (int i = n - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                double t = shuffled[i];
                shuffled[i] = shuffled[j];
                shuffled[j] = t;
            }
            RunStats q = RunStats.of(1, 1, 0, shuffled, null);
            assertEquals(r.medianMs, q.medianMs, 0);
            assertEquals(r.p99Ms, q.p99Ms, 0);
            assertEquals(r.meanMs, q.meanMs, 1e-9 * r.maxMs);
        }
    }

    @Test
    public void trimmedMeanDropsTenPercentEachEndAndNothingBelowTen() {
        double[] nine = {1, 1, 1, 1, 1, 1, 1, 1, 100};
        assertEquals(108.0 / 9, RunStats.of(0, 0, 0, nine, null).trimmedMeanMs, EPS);
        double[] twenty = new double[20];
        Arrays.fill(twenty, 2.0);
        twenty[0] = 1000;
        twenty[1] = 1000;
        twenty[2] = 0;
        // drops 2 at each end: both 1000s and the 0 and one 2.0 go, the rest are 2.0
        assertEquals(2.0, RunStats.of(0, 0, 0, twenty, null).trimmedMeanMs, EPS);
    }

    @Test
    public void oneSampleAndConstantSamples() {
        RunStats one = RunStats.of(3, 4, 0, new double[] {7}, null);
        assertEquals(7, one.medianMs, 0);
        assertEquals(7, one.p99Ms, 0);
        assertEquals(0, one.stdMs, 0);
        double[] flat = new double[50];
        Arrays.fill(flat, 0.3);
        RunStats r = RunStats.of(3, 4, 0, flat, null);
        assertEquals(0.3, r.p90Ms, 0);
        assertEquals(0.3, r.trimmedMeanMs, 1e-15);
        assertEquals(0, r.stdMs, 1e-12);
    }

    @Test
    public void rejectsMissingOrImpossibleTimes() {
        double[][] bad = {{}, {1, -1}, {Double.NaN}, {Double.POSITIVE_INFINITY}};
        for (double[] s : bad) {
            try {
                RunStats.of(1, 1, 0, s, null);
                fail("accepted " + Arrays.toString(s));
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage().length() > 10);
            }
        }
        try {
            RunStats.of(-1, 1, 0, new double[] {1}, null);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("init_ms"));
        }
    }

    @Test
    public void mapHasTheSchemaKeysAndRunsEqualsSampleCount() {
        Map<String, Object> m = RunStats.of(1, 2, 3, new double[] {4, 5, 6}, 0.5).toMap();
        assertEquals(Arrays.asList("init_ms", "first_ms", "warmup_runs", "runs", "samples_ms", "mean_ms", "median_ms",
                "p90_ms", "p99_ms", "std_ms", "trimmed_mean_ms", "min_ms", "max_ms", "measured_s"),
                new java.util.ArrayList<String>(m.keySet()));
        assertEquals(3L, m.get("runs"));
        assertEquals(3, ((List<?>) m.get("samples_ms")).size());
        assertEquals(3L, m.get("warmup_runs"));
    }

    @Test
    public void trimmedMeanDropsExactlyNDivTenAtEachEnd() {
        for (int n = 1; n <= 1000; n++) {
            double[] s = new double[n];
            for (int i = 0; i < n; i++) {
                s[i] = (double) i * i;
            }
            int cut = n / 10;
            double sum = 0;
            for (int i = cut; i < n - cut; i++) {
                sum += s[i];
            }
            assertEquals("n=" + n, sum / (n - 2 * cut), RunStats.trimmedMean(s, RunStats.TRIM_FRACTION), 1e-6);
        }
    }
}
