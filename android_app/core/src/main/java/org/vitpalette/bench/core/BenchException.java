package org.vitpalette.bench.core;

/**
 * Base of every error the core module raises on purpose (mirrors the Python tree's ToolError).
 *
 * <p>The message names the thing that is wrong; {@link #nextStep()} says what to do about it. The
 * app turns any of these into a result document with a status and this text, never a silent exit.
 */
public class BenchException extends Exception {
    private static final long serialVersionUID = 1L;
    private final String nextStep;

    public BenchException(String message) {
        this(message, null, null);
    }

    public BenchException(String message, String nextStep) {
        this(message, nextStep, null);
    }

    public BenchException(String message, String nextStep, Throwable cause) {
        super(message, cause);
        this.nextStep = nextStep;
    }

    /** What the user should do next, or null when there is nothing useful to say. */
    public String nextStep() {
        return nextStep;
    }

    /** The message followed by the next step, as one line for a result's error field. */
    public String describe() {
        return nextStep == null ? getMessage() : getMessage() + " (next step: " + nextStep + ")";
    }
}
