package org.vitpalette.bench.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import org.junit.Test;

public class NpyGoldenTest {
    @Test
    public void roundTripsAndWritesNumpyCompatibleFiles() throws Exception {
        float[] data = new float[2 * 3 * 4];
        for (int i = 0; i < data.length; i++) {
            data[i] = (float) Math.sin(i) * 3.5f;
        }
        Npy.Array a = new Npy.Array(new int[] {2, 3, 4}, data);
        byte[] bytes = Npy.toBytes(a);
        assertEquals(0, (bytes.length - data.length * 4) % 64); // numpy pads the header to 64 bytes
        Npy.Array back = Npy.parseFloat32(bytes, "mem");
        assertArrayEquals(a.shape, back.shape);
        assertArrayEquals(data, back.data, 0f);
        // Leave files for the Python test to load with numpy (cross-check of the format).
        Path out = TestSupport.resultsOut().resolve("npy");
        Files.createDirectories(out);
        Files.write(out.resolve("sin_2x3x4.npy"), bytes);
        Files.write(out.resolve("vector_5.npy"), Npy.toBytes(new Npy.Array(new int[] {5},
                new float[] {0f, -1.5f, 2.25f, Float.MIN_VALUE, Float.MAX_VALUE})));
    }

    @Test
    public void readsTheHeaderNumpyWrites() throws Exception {
        // Exactly what numpy 1.x/2.x writes for np.zeros((1, 2), np.float32) + [1, 2].
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }";
        StringBuilder h = new StringBuilder(dict);
        while ((10 + h.length() + 1) % 64 != 0) {
            h.append(' ');
        }
        h.append('\n');
        byte[] header = h.toString().getBytes(StandardCharsets.ISO_8859_1);
        byte[] bytes = new byte[10 + header.length + 8];
        byte[] magic = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (byte) header.length, 0};
        System.arraycopy(magic, 0, bytes, 0, 10);
        System.arraycopy(header, 0, bytes, 10, header.length);
        java.nio.ByteBuffer.wrap(bytes, 10 + header.length, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN)
                .putFloat(1f).putFloat(2f);
        Npy.Array a = Npy.parseFloat32(bytes, "numpy");
        assertArrayEquals(new int[] {1, 2}, a.shape);
        assertArrayEquals(new float[] {1f, 2f}, a.data, 0f);
    }

    @Test
    public void refusesOtherDtypesLayoutsAndTruncation() {
        byte[] good = Npy.toBytes(new Npy.Array(new int[] {3}, new float[] {1, 2, 3}));
        String[][] cases = {{"<f4", "<f8", "dtype <f8"}, {"False", "True", "Fortran"}};
        for (String[] c : cases) {
            byte[] bad = new String(good, StandardCharsets.ISO_8859_1).replace(c[0], c[1])
                    .getBytes(StandardCharsets.ISO_8859_1);
            try {
                Npy.parseFloat32(bad, "bad.npy");
                fail(c[2]);
            } catch (BenchException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(c[2]) && e.getMessage().contains("bad.npy"));
            }
        }
        try {
            Npy.parseFloat32(Arrays.copyOf(good, good.length - 1), "short.npy");
            fail();
        } catch (BenchException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("12 data bytes"));
        }
        try {
            Npy.parseFloat32("not numpy at all".getBytes(StandardCharsets.UTF_8), "txt");
            fail();
        } catch (BenchException e) {
            assertTrue(e.getMessage().contains("bad magic"));
        }
    }

    @Test
    public void goldenCheckFollowsAllclose() {
        float[] expected = {1f, -2f, 100f};
        GoldenCheck ok = GoldenCheck.compare(expected, new float[] {1.0005f, -2f, 100.05f}, 1e-3, 1e-3);
        assertTrue(ok.reason, ok.passed);
        assertEquals(0.05, ok.maxAbsDiff, 1e-4);
        assertNull(ok.reason);
        GoldenCheck bad = GoldenCheck.compare(expected, new float[] {1f, -2.1f, 100f}, 1e-3, 1e-3);
        assertFalse(bad.passed);
        assertEquals(0.1, bad.maxAbsDiff, 1e-5);
        assertTrue(bad.reason, bad.reason.contains("index 1"));
        Map<String, Object> m = bad.toMap();
        assertEquals(Boolean.TRUE, m.get("checked"));
        assertEquals(Boolean.FALSE, m.get("passed"));
        GoldenCheck nan = GoldenCheck.compare(expected, new float[] {1f, Float.NaN, 100f}, 1, 1);
        assertFalse(nan.passed);
        assertTrue(nan.reason.contains("NaN"));
        GoldenCheck size = GoldenCheck.compare(expected, new float[] {1f}, 1, 1);
        assertFalse(size.passed);
        assertTrue(size.reason.contains("1 output values"));
    }
}
