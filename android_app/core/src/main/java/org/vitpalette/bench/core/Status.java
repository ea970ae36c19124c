package org.vitpalette.bench.core;

/** Result status values, exactly the enum in results/schema/result.schema.json. */
public enum Status {
    OK("ok"),
    INVALID_JOB("invalid_job"),
    LOAD_FAILED("load_failed"),
    GOLDEN_MISMATCH("golden_mismatch"),
    THERMAL_ABORT("thermal_abort"),
    CRASHED("crashed"),
    TIMEOUT("timeout"),
    CANCELLED("cancelled");

    private final String wire;

    Status(String wire) {
        this.wire = wire;
    }

    /** The string used in JSON. */
    public String wireName() {
        return wire;
    }

    /** The status for a JSON string, or IllegalArgumentException naming the allowed values. */
    public static Status fromWire(String s) {
        StringBuilder allowed = new StringBuilder();
        for (Status st : values()) {
            if (st.wire.equals(s)) {
                return st;
            }
            allowed.append(allowed.length() == 0 ? "" : ", ").append(st.wire);
        }
        throw new IllegalArgumentException("unknown status " + s + " (allowed: " + allowed + ")");
    }
}
