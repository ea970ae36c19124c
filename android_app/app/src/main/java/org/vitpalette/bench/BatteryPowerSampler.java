package org.vitpalette.bench;

import android.content.Context;
import android.content.Intent;
import android.content.IntentFilter;
import android.os.BatteryManager;
import java.util.ArrayList;
import java.util.List;
import org.vitpalette.bench.core.EnergyIntegrator;
import org.vitpalette.bench.core.Platform;
import org.vitpalette.bench.core.PowerSampler;

/**
 * Samples BatteryManager current (BATTERY_PROPERTY_CURRENT_NOW) and the battery voltage (from
 * the sticky ACTION_BATTERY_CHANGED intent) on its own thread, and reads the cumulative charge
 * (uAh) and energy (nWh) counters at start and stop.
 *
 * <p>Readings are kept raw: unit (uA vs mA) and sign are normalised in :core's
 * {@link EnergyIntegrator} from the job's energy settings. The fuel gauge typically updates about
 * once a second, so short runs are noisy; the runner's minimum duration is the remedy.
 */
final class BatteryPowerSampler implements PowerSampler {
    private static final IntentFilter BATTERY_CHANGED = new IntentFilter(Intent.ACTION_BATTERY_CHANGED);

    private final Context context;
    private final Platform platform;
    private final BatteryManager battery;
    private final List<EnergyIntegrator.Sample> samples = new ArrayList<EnergyIntegrator.Sample>();
    private volatile boolean running;
    private Thread thread;
    private long chargeStartUah = Long.MIN_VALUE;
    private long chargeEndUah = Long.MIN_VALUE;
    private long energyStartNwh = Long.MIN_VALUE;
    private long energyEndNwh = Long.MIN_VALUE;
    private int skipped;

    BatteryPowerSampler(Context context, Platform platform) {
        this.context = context.getApplicationContext();
        this.platform = platform;
        this.battery = (BatteryManager) this.context.getSystemService(Context.BATTERY_SERVICE);
    }

    private static boolean unsupported(long v) {
        return v == Long.MIN_VALUE || v == Integer.MIN_VALUE;
    }

    @Override
    public String unavailableReason() {
        if (battery == null) {
            return "no BatteryManager service on this device";
        }
        Intent status = context.registerReceiver(null, BATTERY_CHANGED);
        if (status == null) {
            return "no ACTION_BATTERY_CHANGED broadcast: battery voltage unknown";
        }
        int plugged = status.getIntExtra(BatteryManager.EXTRA_PLUGGED, 0);
        if (plugged != 0) {
            String how = plugged == BatteryManager.BATTERY_PLUGGED_USB ? "USB"
                    : plugged == BatteryManager.BATTERY_PLUGGED_AC ? "AC"
                            : plugged == BatteryManager.BATTERY_PLUGGED_WIRELESS ? "wireless" : "plugged " + plugged;
            return "the phone is charging (" + how + "): battery current is meaningless while charging;"
                    + " unplug it and use adb over Wi-Fi (adb tcpip 5555; adb connect PHONE_IP:5555)";
        }
        long current = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_CURRENT_NOW);
        if (unsupported(current)) {
            return "BatteryManager.BATTERY_PROPERTY_CURRENT_NOW is not supported on this device";
        }
        if (current == 0) {
            return "BatteryManager.BATTERY_PROPERTY_CURRENT_NOW reads 0: this fuel gauge does not report current";
        }
        double mv = EnergyIntegrator.normalizeVoltageMv(status.getIntExtra(BatteryManager.EXTRA_VOLTAGE, -1));
        if (Double.isNaN(mv)) {
            return "battery voltage (EXTRA_VOLTAGE) is missing or implausible: "
                    + status.getIntExtra(BatteryManager.EXTRA_VOLTAGE, -1);
        }
        return null;
    }

    @Override
    public String method() {
        return "battery";
    }

    @Override
    public synchronized void start(final int intervalMs) {
        if (thread != null) {
            throw new IllegalStateException("battery sampler started twice");
        }
        samples.clear();
        chargeStartUah = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_CHARGE_COUNTER);
        energyStartNwh = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_ENERGY_COUNTER);
        running = true;
        thread = new Thread(new Runnable() {
            @Override
            public void run() {
                loop(intervalMs);
            }
        }, "battery-sampler");
        thread.setPriority(Thread.MAX_PRIORITY);
        thread.start();
    }

    private void loop(int intervalMs) {
        long startNs = platform.elapsedNanos();
        long k = 0;
        while (running) {
            readOnce();
            k++;
            // Fixed rate against the start time, so slow binder calls do not stretch the interval.
            long nextNs = startNs + k * intervalMs * 1_000_000L;
            long waitMs = (nextNs - platform.elapsedNanos()) / 1_000_000L;
            if (waitMs > 0) {
                try {
                    Thread.sleep(waitMs);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }

    private void readOnce() {
        double tMs = platform.elapsedNanos() / 1e6;
        long current = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_CURRENT_NOW);
        Intent status = context.registerReceiver(null, BATTERY_CHANGED);
        double mv = status == null ? Double.NaN
                : EnergyIntegrator.normalizeVoltageMv(status.getIntExtra(BatteryManager.EXTRA_VOLTAGE, -1));
        synchronized (this) {
            if (unsupported(current) || Double.isNaN(mv)) {
                skipped++;
                return;
            }
            samples.add(new EnergyIntegrator.Sample(tMs, current, mv));
        }
    }

    @Override
    public List<EnergyIntegrator.Sample> stop() {
        Thread t;
        synchronized (this) {
            t = thread;
        }
        running = false;
        if (t != null) {
            t.interrupt();
            try {
                t.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        chargeEndUah = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_CHARGE_COUNTER);
        energyEndNwh = battery.getLongProperty(BatteryManager.BATTERY_PROPERTY_ENERGY_COUNTER);
        synchronized (this) {
            return new ArrayList<EnergyIntegrator.Sample>(samples);
        }
    }

    @Override
    public String countersNote() {
        StringBuilder sb = new StringBuilder();
        if (unsupported(chargeStartUah) || unsupported(chargeEndUah) || chargeStartUah <= 0) {
            sb.append("charge counter unsupported");
        } else {
            sb.append("charge counter ").append(chargeStartUah).append(" -> ").append(chargeEndUah).append(" uAh");
        }
        if (unsupported(energyStartNwh) || unsupported(energyEndNwh) || energyStartNwh <= 0) {
            sb.append("; energy counter unsupported");
        } else {
            sb.append("; energy counter ").append(energyStartNwh).append(" -> ").append(energyEndNwh).append(" nWh");
        }
        if (skipped > 0) {
            sb.append("; ").append(skipped).append(" unreadable samples skipped");
        }
        return sb.toString();
    }
}
