package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class ModelFileCheckTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    @Test
    public void sha256MatchesTheStandardVector() throws Exception {
        Path f = tmp.newFile("abc").toPath();
        Files.write(f, "abc".getBytes(StandardCharsets.US_ASCII));
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", ModelFileCheck.sha256(f));
        ModelFileCheck.verify(f, 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    @Test
    public void namesTheFileAndWhatDiffers() throws Exception {
        Path f = tmp.newFile("m.tflite").toPath();
        Files.write(f, "abd".getBytes(StandardCharsets.US_ASCII));
        String[][] cases = {
            {"4", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "has 3 bytes, the job expects 4"},
            {"3", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "the job expects ba7816"},
        };
        for (String[] c : cases) {
            try {
                ModelFileCheck.verify(f, Long.parseLong(c[0]), c[1]);
                fail(c[2]);
            } catch (BenchException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(c[2]) && e.getMessage().contains("m.tflite"));
                assertTrue(e.nextStep().contains("push the bundle again"));
            }
        }
        try {
            ModelFileCheck.verify(tmp.getRoot().toPath().resolve("absent.onnx"), 1, "x");
            fail();
        } catch (BenchException e) {
            assertTrue(e.getMessage().contains("does not exist"));
        }
    }
}
