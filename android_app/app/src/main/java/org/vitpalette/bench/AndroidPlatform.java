package org.vitpalette.bench;

import android.content.Context;
import android.os.Build;
import android.os.PowerManager;
import android.os.SystemClock;
import android.util.Log;
import java.io.File;
import java.nio.file.Path;
import org.vitpalette.bench.core.DeviceInfo;
import org.vitpalette.bench.core.Platform;
import org.vitpalette.bench.core.ProcMemory;

/** {@link Platform} on Android: clocks, thermal status, Build fields, the app's files folder. */
final class AndroidPlatform implements Platform {
    private final Context context;
    private final PowerManager power;

    AndroidPlatform(Context context) {
        this.context = context.getApplicationContext();
        this.power = (PowerManager) this.context.getSystemService(Context.POWER_SERVICE);
    }

    @Override
    public long elapsedNanos() {
        return SystemClock.elapsedRealtimeNanos();
    }

    @Override
    public long wallClockMs() {
        return System.currentTimeMillis();
    }

    /** PowerManager.getCurrentThermalStatus (API 29+); null on older releases, never a made-up value. */
    @Override
    public Integer thermalStatus() {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q && power != null) {
            return power.getCurrentThermalStatus();
        }
        return null;
    }

    @Override
    public DeviceInfo deviceInfo() {
        String soc = null;
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            soc = Build.SOC_MODEL;
            if (soc == null || soc.isEmpty() || Build.UNKNOWN.equals(soc)) {
                soc = null;
            }
        }
        String abi = Build.SUPPORTED_ABIS != null && Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "";
        // Build.getSerial needs READ_PRIVILEGED_PHONE_STATE from API 29: the host fills the adb serial.
        return new DeviceInfo(Build.MODEL, Build.MANUFACTURER, Build.VERSION.RELEASE, Build.VERSION.SDK_INT, soc, abi,
                null, false, Build.FINGERPRINT, Runtime.getRuntime().availableProcessors());
    }

    @Override
    public Long peakMemoryBytes() {
        return ProcMemory.peakRssBytes();
    }

    @Override
    public String appVersion() {
        return BuildConfig.VERSION_NAME + " (" + BuildConfig.VERSION_CODE + ")";
    }

    /** getExternalFilesDir(null)/results: /sdcard/Android/data/org.vitpalette.bench/files/results. */
    @Override
    public Path defaultResultsDir() {
        File base = context.getExternalFilesDir(null);
        if (base == null) {
            // Shared storage unavailable (rare): fall back to internal storage, readable with run-as.
            base = context.getFilesDir();
        }
        return new File(base, "results").toPath();
    }

    @Override
    public void sleepMs(long ms) throws InterruptedException {
        Thread.sleep(ms);
    }

    @Override
    public void log(String message) {
        Log.i(BenchmarkActivity.TAG, message);
    }
}
