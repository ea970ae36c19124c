package org.vitpalette.bench;

import org.vitpalette.bench.core.Job;
import org.vitpalette.bench.core.ModelLoader;
import org.vitpalette.bench.core.ModelSession;

/** Picks the runtime from the job's format: LiteRT for .tflite, ONNX Runtime for .onnx. */
final class RuntimeModelLoader implements ModelLoader {
    @Override
    public ModelSession load(Job job) throws Exception {
        switch (job.format) {
            case TFLITE:
                return LiteRtSession.open(job);
            case ONNX:
                return OrtModelSession.open(job);
            default:
                throw new IllegalArgumentException("no runtime for format " + job.format.wireName());
        }
    }
}
