package org.vitpalette.bench.core;

/**
 * One loaded model in one runtime (LiteRT or ONNX Runtime in the app; a fake in tests).
 * Implementations live in the app module; everything around them (timing, statistics, the
 * golden check, the result) lives in {@link JobRunner}.
 */
public interface ModelSession extends AutoCloseable {
    /** "litert" or "onnxruntime" (the result schema's runtime.name). */
    String runtimeName();

    /** Runtime library version, or null when the runtime does not say. */
    String runtimeVersion();

    /** Shape of the first input with dynamic dimensions resolved to 1 (batch 1). */
    int[] inputShape();

    /**
     * Runs one inference on a float32 input of the given shape (C order) and returns the first
     * output, flattened. Called from one thread only.
     */
    float[] run(float[] input, int[] shape) throws Exception;

    /** Frees the native resources; never throws. */
    @Override
    void close();
}
