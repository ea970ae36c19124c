package org.vitpalette.bench;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import org.vitpalette.bench.core.Job;
import org.vitpalette.bench.core.ModelSession;

/**
 * An .onnx model in ONNX Runtime. Delegates from the job: {@code cpu} = the default CPU execution
 * provider with the job's intra-op threads, {@code xnnpack} = the XNNPACK EP (it gets the threads;
 * the session's own pool is kept at 1 as ONNX Runtime recommends), {@code nnapi} = the NNAPI EP.
 * ONNX Runtime for Android has no GPU EP, so {@code gpu} fails to load with that reason.
 *
 * <p>Note for palette models: graph optimizations fold a constant Cast-Gather decode into fp32
 * weights at session start, so an ONNX palette file runs like the dense one (see ARCHITECTURE.md).
 */
final class OrtModelSession implements ModelSession {
    private final OrtEnvironment env;
    private final OrtSession session;
    private final String inputName;
    private final long[] modelShape;
    private OnnxTensor inputTensor;
    private float[] lastInput;
    private int[] lastShape;

    private OrtModelSession(OrtEnvironment env, OrtSession session) throws OrtException {
        this.env = env;
        this.session = session;
        Map.Entry<String, NodeInfo> first = session.getInputInfo().entrySet().iterator().next();
        this.inputName = first.getKey();
        if (!(first.getValue().getInfo() instanceof TensorInfo)) {
            throw new IllegalStateException("model input " + inputName + " is not a tensor");
        }
        TensorInfo info = (TensorInfo) first.getValue().getInfo();
        if (info.type != OnnxJavaType.FLOAT) {
            throw new IllegalStateException("model input " + inputName + " is " + info.type
                    + "; this app feeds float32 (export with float32 I/O)");
        }
        this.modelShape = info.getShape();
    }

    static OrtModelSession open(Job job) throws OrtException {
        if (job.runtime.delegate == Job.Delegate.GPU) {
            throw new IllegalArgumentException("ONNX Runtime for Android has no GPU execution provider;"
                    + " use delegate nnapi or xnnpack, or the tflite bundle with delegate gpu");
        }
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        OrtSession.SessionOptions options = new OrtSession.SessionOptions();
        try {
            options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            options.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
            options.setInterOpNumThreads(1);
            switch (job.runtime.delegate) {
                case CPU:
                    options.setIntraOpNumThreads(job.runtime.threads);
                    break;
                case XNNPACK:
                    Map<String, String> xnnpack = new HashMap<String, String>();
                    xnnpack.put("intra_op_num_threads", String.valueOf(job.runtime.threads));
                    options.addXnnpack(xnnpack);
                    options.setIntraOpNumThreads(1);
                    break;
                case NNAPI:
                    options.addNnapi();
                    options.setIntraOpNumThreads(job.runtime.threads);
                    break;
                default:
                    throw new IllegalArgumentException("unknown delegate " + job.runtime.delegate);
            }
            OrtSession session = env.createSession(job.modelFile, options);
            try {
                return new OrtModelSession(env, session);
            } catch (RuntimeException | OrtException e) {
                session.close();
                throw e;
            }
        } finally {
            options.close();
        }
    }

    @Override
    public String runtimeName() {
        return "onnxruntime";
    }

    @Override
    public String runtimeVersion() {
        return BuildConfig.ONNXRUNTIME_VERSION;
    }

    @Override
    public int[] inputShape() {
        int[] shape = new int[modelShape.length];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = (int) Math.max(modelShape[i], 1); // dynamic dimensions (-1) become 1
        }
        return shape;
    }

    @Override
    public float[] run(float[] input, int[] shape) throws OrtException {
        if (input != lastInput || !Arrays.equals(shape, lastShape)) {
            // The timed loop feeds the same array every run; build the input tensor once.
            if (inputTensor != null) {
                inputTensor.close();
            }
            long[] dims = new long[shape.length];
            for (int i = 0; i < shape.length; i++) {
                dims[i] = shape[i];
            }
            inputTensor = OnnxTensor.createTensor(env, FloatBuffer.wrap(input), dims);
            lastInput = input;
            lastShape = shape.clone();
        }
        try (OrtSession.Result result = session.run(Collections.singletonMap(inputName, inputTensor))) {
            OnnxValue value = result.get(0);
            if (!(value instanceof OnnxTensor)) {
                throw new IllegalStateException("the model's first output is not a tensor");
            }
            FloatBuffer fb = ((OnnxTensor) value).getFloatBuffer();
            if (fb == null) {
                throw new IllegalStateException("the model's first output is not float32");
            }
            float[] out = new float[fb.remaining()];
            fb.get(out);
            return out;
        }
    }

    @Override
    public void close() {
        if (inputTensor != null) {
            inputTensor.close();
            inputTensor = null;
        }
        try {
            session.close();
        } catch (OrtException e) {
            // Closing cannot be retried; the process ends soon anyway.
        }
    }
}
