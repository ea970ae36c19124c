package org.vitpalette.bench.core;

import java.util.LinkedHashMap;
import java.util.Map;

/** The result's device section; the app fills it from android.os.Build. */
public final class DeviceInfo {
    public final String model;
    public final String manufacturer;
    public final String androidVersion;
    public final int sdkInt;
    /** SoC name (Build.SOC_MODEL on API 31+), or null. */
    public final String soc;
    public final String abi;
    /** Null when the app may not read it (API 29+ hides Build.getSerial). */
    public final String serial;
    public final boolean simulated;
    public final String fingerprint;
    /** Number of CPU cores, or null. */
    public final Integer cores;

    public DeviceInfo(String model, String manufacturer, String androidVersion, int sdkInt, String soc, String abi,
            String serial, boolean simulated, String fingerprint, Integer cores) {
        if (model == null || model.isEmpty()) {
            throw new IllegalArgumentException("device model is required (Build.MODEL)");
        }
        if (sdkInt < 1 || sdkInt > 1000) {
            throw new IllegalArgumentException("device sdk_int must be in 1..1000, got " + sdkInt);
        }
        this.model = clip(model, 128);
        this.manufacturer = clip(orEmpty(manufacturer), 128);
        this.androidVersion = clip(orEmpty(androidVersion), 32);
        this.sdkInt = sdkInt;
        this.soc = soc == null ? null : clip(soc, 128);
        this.abi = clip(orEmpty(abi), 64);
        this.serial = serial == null ? null : clip(serial, 128);
        this.simulated = simulated;
        this.fingerprint = fingerprint == null ? null : clip(fingerprint, 512);
        this.cores = cores == null || cores < 1 ? null : cores;
    }

    private static String orEmpty(String s) {
        return s == null ? "" : s;
    }

    static String clip(String s, int maxChars) {
        if (s.codePointCount(0, s.length()) <= maxChars) {
            return s;
        }
        return s.substring(0, s.offsetByCodePoints(0, maxChars));
    }

    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("model", model);
        m.put("manufacturer", manufacturer);
        m.put("android_version", androidVersion);
        m.put("sdk_int", (long) sdkInt);
        m.put("soc", soc);
        m.put("abi", abi);
        m.put("serial", serial);
        m.put("simulated", simulated);
        m.put("fingerprint", fingerprint);
        m.put("cores", cores == null ? null : (Object) Long.valueOf(cores));
        return m;
    }
}
