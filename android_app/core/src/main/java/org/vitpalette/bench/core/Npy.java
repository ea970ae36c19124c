package org.vitpalette.bench.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads and writes NumPy .npy files holding float32 arrays (little-endian, C order), the format
 * of a bundle's golden_input.npy / golden_output.npy.
 */
public final class Npy {
    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};

    /** A float32 array and its shape. */
    public static final class Array {
        public final int[] shape;
        public final float[] data;

        public Array(int[] shape, float[] data) {
            long n = 1;
            for (int d : shape) {
                if (d < 0) {
                    throw new IllegalArgumentException("negative dimension in shape");
                }
                n *= d;
            }
            if (n != data.length) {
                throw new IllegalArgumentException("shape holds " + n + " values but data has " + data.length);
            }
            this.shape = shape.clone();
            this.data = data;
        }

        /** Shape as text, e.g. (1, 3, 224, 224). */
        public String shapeText() {
            return Npy.shapeText(shape);
        }
    }

    private Npy() {
    }

    public static String shapeText(int[] shape) {
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            sb.append(i == 0 ? "" : ", ").append(shape[i]);
        }
        return sb.append(shape.length == 1 ? ",)" : ")").toString();
    }

    /** Reads a float32 .npy file; any other dtype or layout is a DataError-like BenchException. */
    public static Array readFloat32(Path path) throws BenchException {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(path);
        } catch (IOException e) {
            throw new BenchException("cannot read golden file " + path + ": " + e,
                    "push the bundle's .npy files beside the model", e);
        }
        return parseFloat32(bytes, path.toString());
    }

    private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
    private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

    /** Parses .npy bytes; {@code name} is used in messages. */
    public static Array parseFloat32(byte[] bytes, String name) throws BenchException {
        String next = "re-export the bundle (golden files are float32, little-endian, C order .npy)";
        if (bytes.length < 10) {
            throw new BenchException(name + " is not a .npy file (only " + bytes.length + " bytes)", next);
        }
        for (int i = 0; i < MAGIC.length; i++) {
            if (bytes[i] != MAGIC[i]) {
                throw new BenchException(name + " is not a .npy file (bad magic)", next);
            }
        }
        int major = bytes[6] & 0xff;
        ByteBuffer bb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        int headerLen;
        int headerStart;
        if (major == 1) {
            headerLen = bb.getShort(8) & 0xffff;
            headerStart = 10;
        } else if (major == 2 || major == 3) {
            if (bytes.length < 12) {
                throw new BenchException(name + " is truncated", next);
            }
            headerLen = bb.getInt(8);
            headerStart = 12;
        } else {
            throw new BenchException(name + " has unsupported .npy version " + major, next);
        }
        if (headerLen < 0 || headerStart + (long) headerLen > bytes.length) {
            throw new BenchException(name + " is truncated (header runs past the end)", next);
        }
        String header = new String(bytes, headerStart, headerLen, StandardCharsets.ISO_8859_1);
        Matcher d = DESCR.matcher(header);
        Matcher f = FORTRAN.matcher(header);
        Matcher s = SHAPE.matcher(header);
        if (!d.find() || !f.find() || !s.find()) {
            throw new BenchException(name + " has an unreadable .npy header: " + header.trim(), next);
        }
        String descr = d.group(1);
        if (!descr.equals("<f4") && !(descr.equals("=f4") && ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN)) {
            throw new BenchException(name + " holds dtype " + descr + ", expected float32 little-endian (<f4)", next);
        }
        if (f.group(1).equals("True")) {
            throw new BenchException(name + " is in Fortran order, expected C order", next);
        }
        List<Integer> dims = new ArrayList<Integer>();
        for (String part : s.group(1).split(",")) {
            String p = part.trim();
            if (p.isEmpty()) {
                continue;
            }
            try {
                dims.add(Integer.parseInt(p.replaceAll("L$", "")));
            } catch (NumberFormatException e) {
                throw new BenchException(name + " has a bad shape entry " + p, next);
            }
        }
        int[] shape = new int[dims.size()];
        long n = 1;
        for (int i = 0; i < shape.length; i++) {
            shape[i] = dims.get(i);
            n *= shape[i];
        }
        int dataStart = headerStart + headerLen;
        long want = n * 4;
        if (bytes.length - dataStart != want) {
            throw new BenchException(name + " should hold " + want + " data bytes for shape " + shapeText(shape)
                    + " but holds " + (bytes.length - dataStart), next);
        }
        float[] data = new float[(int) n];
        bb.position(dataStart);
        bb.asFloatBuffer().get(data);
        return new Array(shape, data);
    }

    /** Encodes a float32 array as .npy version 1.0 bytes (used by tests and tools). */
    public static byte[] toBytes(Array a) {
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shapeText(a.shape) + ", }";
        int unpadded = 10 + dict.length() + 1;
        int pad = (64 - unpadded % 64) % 64;
        StringBuilder header = new StringBuilder(dict);
        for (int i = 0; i < pad; i++) {
            header.append(' ');
        }
        header.append('\n');
        byte[] h = header.toString().getBytes(StandardCharsets.ISO_8859_1);
        ByteBuffer bb = ByteBuffer.allocate(10 + h.length + a.data.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        bb.put(MAGIC).put((byte) 1).put((byte) 0).putShort((short) h.length).put(h);
        for (float v : a.data) {
            bb.putFloat(v);
        }
        return bb.array();
    }
}
