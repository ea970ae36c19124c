package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class ResultWriterTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private static final DeviceInfo PIXEL = new DeviceInfo("Pixel 8", "Google", "15", 35, "Tensor G3", "arm64-v8a",
            null, false, null, 9);

    /** The invariants result.schema.json states in prose (readers check them beside the schema). */
    static void assertInvariants(Map<String, Object> doc) {
        String started = (String) doc.get("started_at");
        String finished = (String) doc.get("finished_at");
        assertTrue(started + " > " + finished, !java.time.OffsetDateTime.parse(started)
                .isAfter(java.time.OffsetDateTime.parse(finished)));
        Status.fromWire((String) doc.get("status"));
        Map<?, ?> latency = (Map<?, ?>) doc.get("latency");
        if (latency != null) {
            assertEquals(((Number) latency.get("runs")).longValue(), ((List<?>) latency.get("samples_ms")).size());
            double min = ((Number) latency.get("min_ms")).doubleValue();
            double median = ((Number) latency.get("median_ms")).doubleValue();
            double max = ((Number) latency.get("max_ms")).doubleValue();
            assertTrue(min <= median && median <= max);
        }
        boolean ok = "ok".equals(doc.get("status"));
        assertEquals(ok, doc.get("error") == null);
    }

    private ResultWriter ok() {
        Job job;
        try {
            job = Job.parse(TestSupport.minimalJob("rw-ok", "/data/local/tmp/m.onnx"), "t");
        } catch (JobException e) {
            throw new AssertionError(e);
        }
        return new ResultWriter("rw-ok").status(Status.OK).startedAtMs(1795000000000L).finishedAtMs(1795000004321L)
                .device(PIXEL).model(job.modelSection()).runtime("onnxruntime", "1.20.0", 2, Job.Delegate.CPU, 8)
                .latency(RunStats.of(10, 5, 2, new double[] {3, 4, 5}, 0.012))
                .energy(EnergyIntegrator.noneSection(100, "test")).thermal(0, 1).peakMemoryBytes(1000L);
    }

    @Test
    public void okDocumentHasEverySchemaKeyAndPassesTheInvariants() throws Exception {
        Map<String, Object> doc = ok().toMap();
        assertEquals(Arrays.asList("schema_version", "run_id", "run_set", "status", "started_at", "finished_at",
                "app_version", "device", "model", "runtime", "latency", "energy", "thermal", "peak_memory_bytes",
                "golden", "error"), new ArrayList<String>(doc.keySet()));
        assertEquals("2026-11-18T11:06:40.000Z", doc.get("started_at"));
        assertEquals("2026-11-18T11:06:44.321Z", doc.get("finished_at"));
        assertInvariants(doc);
        Path out = ok().writeTo(TestSupport.resultsOut().resolve("writer").resolve("ok.json"));
        assertEquals(doc, Json.parseObject(TestSupport.read(out)));
    }

    @Test
    public void failuresAlwaysCarryErrorTextAndOkNever() throws Exception {
        Map<String, Object> doc = ok().status(Status.CRASHED).toMap();
        assertTrue(((String) doc.get("error")).contains("no error text"));
        TestSupport.write(TestSupport.resultsOut().resolve("writer").resolve("crashed_no_text.json"),
                Json.writePretty(doc));
        try {
            ok().error("boom").toMap();
            fail();
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage().contains("status ok but an error"));
        }
        try {
            ok().latency(null).toMap();
            fail();
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage().contains("lacks"));
        }
    }

    @Test
    public void untimedStatusesDropLatencyAndOnlyInvalidJobMayLackAModel() throws Exception {
        Map<String, Object> lf = ok().status(Status.LOAD_FAILED).error("bad file").toMap();
        assertNull(lf.get("latency"));
        try {
            new ResultWriter("x").status(Status.CRASHED).device(PIXEL).error("e").toMap();
            fail();
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage().contains("only invalid_job"));
        }
        Map<String, Object> ij = new ResultWriter("x").status(Status.INVALID_JOB).device(PIXEL).error("e").toMap();
        assertNull(ij.get("model"));
        TestSupport.write(TestSupport.resultsOut().resolve("writer").resolve("load_failed.json"), Json.writePretty(lf));
        TestSupport.write(TestSupport.resultsOut().resolve("writer").resolve("invalid_job.json"), Json.writePretty(ij));
    }

    @Test
    public void errorTextIsClippedToTheSchemaLimitAndThermalToItsRange() {
        StringBuilder huge = new StringBuilder();
        for (int i = 0; i < 30000; i++) {
            huge.append('x');
        }
        Map<String, Object> doc = ok().status(Status.CRASHED).error(huge.toString()).thermal(-1, 9).toMap();
        assertTrue(((String) doc.get("error")).length() <= ResultWriter.MAX_ERROR_CHARS);
        assertNull(((Map<?, ?>) doc.get("thermal")).get("before"));
        assertNull(((Map<?, ?>) doc.get("thermal")).get("after"));
    }

    @Test
    public void runIdsAreCheckedAndFallbacksAreSafe() {
        try {
            new ResultWriter("../etc");
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("run_id"));
        }
        assertEquals("invalid-job-5", ResultWriter.fallbackRunId(null, "/data/local/tmp/job.json", 5));
        assertEquals("invalid-my_job_1-5", ResultWriter.fallbackRunId(null, "/x/my job#1.json", 5));
        assertEquals("invalid-job-5", ResultWriter.fallbackRunId(null, "/x/....json", 5));
        Map<String, Object> raw = new java.util.HashMap<String, Object>();
        raw.put("run_id", "r-7");
        assertEquals("r-7", ResultWriter.fallbackRunId(raw, "/x/j.json", 5));
        raw.put("run_id", "bad/id");
        assertTrue(ResultWriter.fallbackRunId(raw, "/x/j.json", 5).startsWith("invalid-j-"));
    }

    @Test
    public void atomicWriteReplacesWholeFilesAndLeavesNoTemporaries() throws Exception {
        Path target = tmp.getRoot().toPath().resolve("deep").resolve("r.json");
        ResultWriter.writeAtomically(target, "{\"a\": 1}\n");
        ResultWriter.writeAtomically(target, "{\"a\": 2}\n");
        assertEquals("{\"a\": 2}\n", TestSupport.read(target));
        File[] left = target.getParent().toFile().listFiles();
        assertEquals(1, left.length);
    }

    @Test
    public void everySharedResultFixtureParsesAndValidOnesMeetTheInvariants() throws Exception {
        for (Path p : TestSupport.fixtures("result", "valid")) {
            Map<String, Object> doc = Json.parseObject(TestSupport.read(p));
            try {
                assertInvariants(doc);
            } catch (AssertionError e) {
                throw new AssertionError(p.getFileName() + ": " + e.getMessage(), e);
            }
        }
        for (Path p : TestSupport.fixtures("result", "invalid")) {
            assertTrue(p.toString(), Json.parseObject(TestSupport.read(p)).get("_why") instanceof String);
        }
    }
}
