package org.vitpalette.bench.core;

import java.nio.file.Path;

/** What the runner needs from the device; the app implements it with Android APIs. */
public interface Platform {
    /** Monotonic clock in ns (SystemClock.elapsedRealtimeNanos on Android). */
    long elapsedNanos();

    /** Wall clock in ms since the epoch, for started_at/finished_at. */
    long wallClockMs();

    /** Android thermal status 0..6 (PowerManager.getCurrentThermalStatus), or null below API 29. */
    Integer thermalStatus();

    DeviceInfo deviceInfo();

    /** Peak memory of this process in bytes, or null when unknown. */
    Long peakMemoryBytes();

    /** App version name and code, e.g. "0.1.0 (1)", or null. */
    String appVersion();

    /** The folder results go to when the job names no result_file (app files folder + results). */
    Path defaultResultsDir();

    void sleepMs(long ms) throws InterruptedException;

    /** A line for the log (logcat on the phone). */
    void log(String message);
}
