package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.Test;

public class EnergyIntegratorTest {
    private static final EnergyIntegrator AUTO = new EnergyIntegrator(Job.CurrentUnit.AUTO, Job.CurrentSign.AUTO);

    /** Samples of a phone drawing powerMw at voltageMv every intervalMs over [t0, t1], Android units/sign. */
    private static List<EnergyIntegrator.Sample> constant(double powerMw, double voltageMv, double t0, double t1,
            double intervalMs) {
        List<EnergyIntegrator.Sample> out = new ArrayList<EnergyIntegrator.Sample>();
        double ua = powerMw * 1e6 / voltageMv;
        for (double t = t0; t <= t1 + 1e-9; t += intervalMs) {
            out.add(new EnergyIntegrator.Sample(t, -ua, voltageMv));
        }
        return out;
    }

    private static List<EnergyIntegrator.Sample> map(List<EnergyIntegrator.Sample> in, double currentFactor) {
        List<EnergyIntegrator.Sample> out = new ArrayList<EnergyIntegrator.Sample>();
        for (EnergyIntegrator.Sample s : in) {
            out.add(new EnergyIntegrator.Sample(s.tMs, s.current * currentFactor, s.voltageMv));
        }
        return out;
    }

    @Test
    public void constantPowerForTSecondsIsPTimesT() {
        for (double p : new double[] {150, 1234.5, 6000}) {
            for (double seconds : new double[] {1, 7.3, 60}) {
                List<EnergyIntegrator.Sample> s = constant(p, 3870, 0, seconds * 1000, 250);
                EnergyIntegrator.Report r = AUTO.integrate(s, 0, 0, 0, seconds * 1000, 100);
                assertEquals(p * seconds, r.totalMj, 1e-9 * p * seconds);
                assertEquals(r.totalMj / 100, r.perInferenceMj, 1e-12 * r.totalMj);
                assertEquals(seconds, r.windowS, 1e-12);
                assertNull(r.idlePowerMw);
            }
        }
    }

    @Test
    public void milliampReadingsGiveTheSameEnergyAsMicroamps() {
        List<EnergyIntegrator.Sample> ua = constant(2400, 3900, 0, 10000, 100);
        List<EnergyIntegrator.Sample> ma = map(ua, 1e-3);
        EnergyIntegrator.Report a = AUTO.integrate(ua, 0, 0, 0, 10000, 10);
        EnergyIntegrator.Report b = AUTO.integrate(ma, 0, 0, 0, 10000, 10);
        assertEquals(Job.CurrentUnit.UA, a.normalization.unit);
        assertEquals(Job.CurrentUnit.MA, b.normalization.unit);
        assertEquals(a.totalMj, b.totalMj, 1e-9 * a.totalMj);
        EnergyIntegrator explicit = new EnergyIntegrator(Job.CurrentUnit.MA, Job.CurrentSign.NEGATIVE_IS_DISCHARGE);
        assertEquals(a.totalMj, explicit.integrate(ma, 0, 0, 0, 10000, 10).totalMj, 1e-9 * a.totalMj);
        // Results always store uA with Android's sign, whatever the device reported.
        Map<String, Object> m = b.toMap("battery", 100);
        Map<?, ?> first = (Map<?, ?>) ((List<?>) m.get("samples")).get(0);
        assertEquals(-2400 * 1e6 / 3900, (Double) first.get("current_ua"), 1e-6);
        assertEquals("ma", m.get("current_unit"));
    }

    @Test
    public void flippedSignGivesTheSameEnergy() {
        List<EnergyIntegrator.Sample> android = constant(900, 4000, 0, 5000, 200);
        List<EnergyIntegrator.Sample> vendor = map(android, -1);
        EnergyIntegrator.Report a = AUTO.integrate(android, 0, 0, 0, 5000, 5);
        EnergyIntegrator.Report b = AUTO.integrate(vendor, 0, 0, 0, 5000, 5);
        assertEquals(Job.CurrentSign.NEGATIVE_IS_DISCHARGE, a.normalization.sign);
        assertEquals(Job.CurrentSign.POSITIVE_IS_DISCHARGE, b.normalization.sign);
        assertEquals(a.totalMj, b.totalMj, 1e-9 * a.totalMj);
        assertTrue(a.totalMj > 0);
        EnergyIntegrator told = new EnergyIntegrator(Job.CurrentUnit.UA, Job.CurrentSign.POSITIVE_IS_DISCHARGE);
        assertEquals(a.totalMj, told.integrate(vendor, 0, 0, 0, 5000, 5).totalMj, 1e-9 * a.totalMj);
        // mA and flipped together.
        assertEquals(a.totalMj, AUTO.integrate(map(android, -1e-3), 0, 0, 0, 5000, 5).totalMj, 1e-9 * a.totalMj);
    }

    @Test
    public void explicitSettingsOverrideGuesses() {
        // A device that really reports uA but draws little: auto would guess mA; the job says ua.
        List<EnergyIntegrator.Sample> s = constant(20, 4000, 0, 1000, 100); // 5000 uA
        assertEquals(Job.CurrentUnit.MA, AUTO.normalization(s).unit);
        EnergyIntegrator ua = new EnergyIntegrator(Job.CurrentUnit.UA, Job.CurrentSign.AUTO);
        assertEquals(20.0, ua.integrate(s, 0, 0, 0, 1000, 1).totalMj, 1e-9);
        assertTrue(ua.integrate(s, 0, 0, 0, 1000, 1).note.contains("sign"));
        assertTrue(!ua.integrate(s, 0, 0, 0, 1000, 1).note.contains("unit ua"));
    }

    @Test
    public void idleBaselineIsSubtracted() {
        List<EnergyIntegrator.Sample> s = new ArrayList<EnergyIntegrator.Sample>();
        s.addAll(constant(500, 3800, 0, 4900, 100)); // idle 0..5 s at 500 mW
        s.addAll(constant(2000, 3800, 5000, 15000, 100)); // run 5..15 s at 2000 mW
        EnergyIntegrator.Report r = AUTO.integrate(s, 0, 4900, 5000, 15000, 40);
        assertEquals(500, r.idlePowerMw, 1e-9);
        assertEquals(2000 * 10, r.totalMj, 1e-6);
        assertEquals(500 * 10, r.idleMj, 1e-6);
        assertEquals(1500 * 10, r.netMj, 1e-6);
        assertEquals(1500.0 * 10 / 40, r.perInferenceMj, 1e-9);
        assertEquals(4.9, r.idleBaselineS, 1e-12);
        Map<String, Object> m = r.toMap("battery", 100);
        List<?> samples = (List<?>) m.get("samples");
        assertEquals(101, samples.size());
        assertEquals(0.0, (Double) ((Map<?, ?>) samples.get(0)).get("t_ms"), 1e-9);
    }

    @Test
    public void netBelowIdleIsKeptAndExplained() {
        List<EnergyIntegrator.Sample> s = new ArrayList<EnergyIntegrator.Sample>();
        s.addAll(constant(800, 3800, 0, 1000, 100));
        s.addAll(constant(700, 3800, 1100, 3000, 100));
        EnergyIntegrator.Report r = AUTO.integrate(s, 0, 1000, 1100, 3000, 3);
        assertTrue(r.netMj < 0);
        assertTrue(r.note, r.note.contains("below the idle baseline"));
    }

    @Test
    public void linearRampIsIntegratedExactlyWhateverTheSampling() {
        // P(t) = 1000 + 0.5 t (mW, t in ms) over 0..8000 ms: integral = 1000*8 + 0.5*8000^2/2/1000 mJ
        double expected = 8000 + 0.25 * 8000.0 * 8000.0 / 1000;
        Random rnd = new Random(3);
        for (int trial = 0; trial < 20; trial++) {
            List<EnergyIntegrator.Sample> s = new ArrayList<EnergyIntegrator.Sample>();
            s.add(new EnergyIntegrator.Sample(-50, -(1000 - 25) * 1e6 / 4000, 4000));
            double t = -50;
            while (t < 8100) {
                t += 10 + rnd.nextInt(400);
                double p = 1000 + 0.5 * t;
                s.add(new EnergyIntegrator.Sample(t, -p * 1e6 / 4000, 4000));
            }
            Collections.shuffle(s, rnd);
            assertEquals(expected, AUTO.integrate(s, 0, 0, 0, 8000, 1).totalMj, 1e-6);
        }
    }

    @Test
    public void windowEdgesAreInterpolatedAndHeldOutsideTheSamples() {
        double[] t = {1000, 2000};
        double[] p = {100, 300};
        // Inside: 1250..1750 -> mean power 200 over 0.5 s = 100 mJ
        assertEquals(100, EnergyIntegrator.trapezoidMj(t, p, 1250, 1750), 1e-9);
        // Before the first sample power is held at 100: 0..1000 ms -> 100 mJ
        assertEquals(100, EnergyIntegrator.trapezoidMj(t, p, 0, 1000), 1e-9);
        // Whole: held 100 (0..1000), ramp (1000..2000 = 200), held 300 (2000..3000)
        assertEquals(600, EnergyIntegrator.trapezoidMj(t, p, 0, 3000), 1e-9);
        assertEquals(0, EnergyIntegrator.trapezoidMj(t, p, 5, 5), 0);
    }

    @Test
    public void badInputIsRefusedWithAReason() {
        List<EnergyIntegrator.Sample> s = constant(100, 3800, 0, 1000, 100);
        try {
            AUTO.integrate(new ArrayList<EnergyIntegrator.Sample>(), 0, 0, 0, 1, 1);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("no power samples"));
        }
        try {
            AUTO.integrate(s, 0, 0, 10, 10, 1);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("positive length"));
        }
        try {
            new EnergyIntegrator.Sample(0, 1, 0);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("voltage_mv"));
        }
        assertNull(AUTO.integrate(s, 0, 0, 0, 1000, 0).perInferenceMj);
    }

    @Test
    public void noneSectionHasNoFigures() {
        Map<String, Object> m = EnergyIntegrator.noneSection(250, "CURRENT_NOW unsupported");
        assertEquals("none", m.get("method"));
        assertNull(m.get("total_mj"));
        assertNull(m.get("per_inference_mj"));
        assertEquals("CURRENT_NOW unsupported", m.get("note"));
    }

    @Test
    public void voltageIsReadInMillivoltsWhateverTheDeviceUses() {
        assertEquals(3870, EnergyIntegrator.normalizeVoltageMv(3870), 0);
        assertEquals(3870, EnergyIntegrator.normalizeVoltageMv(3.87), 1e-9);
        assertEquals(3870, EnergyIntegrator.normalizeVoltageMv(3870000), 1e-9);
        assertTrue(Double.isNaN(EnergyIntegrator.normalizeVoltageMv(0)));
        assertTrue(Double.isNaN(EnergyIntegrator.normalizeVoltageMv(-1)));
        assertTrue(Double.isNaN(EnergyIntegrator.normalizeVoltageMv(500)));
    }
}
