package org.vitpalette.bench.core;

import java.util.List;

/**
 * Reads battery current and voltage on its own thread while the job runs. Sample times are on
 * the same clock as {@link Platform#elapsedNanos()} (converted to ms), so the runner can cut the
 * idle and measured windows out of one list.
 */
public interface PowerSampler {
    /** Null when sampling can work on this device, else why not (the result says energy method none). */
    String unavailableReason();

    /** The result's energy.method for these samples: "battery" on a phone, "simulated" on the simulator. */
    String method();

    /** Starts sampling every {@code intervalMs} on a background thread. */
    void start(int intervalMs);

    /** Stops sampling and returns every raw sample (unit and sign as the device reports them). */
    List<EnergyIntegrator.Sample> stop();

    /**
     * After {@link #stop()}: what the cumulative counters said over the run (charge counter uAh,
     * energy counter nWh, or that they are unsupported), appended to the energy note; null for none.
     */
    String countersNote();
}
