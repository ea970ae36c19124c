package org.vitpalette.bench.core;

/** The collector did not take the result (refused it, or could not be reached after retries). */
public class CollectorException extends BenchException {
    private static final long serialVersionUID = 1L;
    private final int httpStatus;
    private final int attempts;

    public CollectorException(String message, String nextStep, int httpStatus, int attempts, Throwable cause) {
        super(message, nextStep, cause);
        this.httpStatus = httpStatus;
        this.attempts = attempts;
    }

    /** Last HTTP status seen, or -1 when no answer came (connection refused, timeout). */
    public int httpStatus() {
        return httpStatus;
    }

    /** How many requests were sent. */
    public int attempts() {
        return attempts;
    }
}
