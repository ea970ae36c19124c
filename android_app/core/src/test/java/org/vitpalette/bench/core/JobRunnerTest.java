package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.After;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;
import org.junit.rules.TestName;

/** The whole run on fakes: statuses, the result document, the file and the POST. */
public class JobRunnerTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();
    @Rule
    public TestName name = new TestName();

    private Fakes.FakePlatform platform;
    private Fakes.FakeSession session;
    private Fakes.FakeSampler sampler;
    private CollectorClientTest.ScriptedCollector collector;

    @Before
    public void setUp() throws IOException {
        platform = new Fakes.FakePlatform(tmp.newFolder("files", "results").toPath());
        session = new Fakes.FakeSession(platform, 5.0, new int[] {1, 1, 4, 4}, 10);
        sampler = new Fakes.FakeSampler(session, 500, 2000, true);
    }

    @After
    public void tearDown() {
        if (collector != null) {
            collector.server.stop(0);
        }
    }

    private JobRunner runner(Exception loadFailure) {
        CollectorClient client = new CollectorClient(2, 1, 1, 2000, 5000, new CollectorClient.Sleeper() {
            @Override
            public void sleep(long ms) {
            }
        });
        return new JobRunner(platform, new Fakes.FakeLoader(session, loadFailure), sampler, client);
    }

    private Path writeJob(String text) throws IOException {
        Path p = tmp.getRoot().toPath().resolve("job.json");
        TestSupport.write(p, text);
        return p;
    }

    /** A job for a model file that exists in the temp folder, with its real size and sha256. */
    private String job(String runId, String extra) throws IOException {
        Path model = tmp.getRoot().toPath().resolve("model.onnx");
        if (!Files.exists(model)) {
            Files.write(model, "not really an onnx file, the loader is a fake".getBytes("UTF-8"));
        }
        return TestSupport.minimalJob(runId, model.toAbsolutePath().toString())
                .replace("\"model_bytes\": 215432", "\"model_bytes\": " + Files.size(model))
                .replace("3f6c2a9b0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c",
                        ModelFileCheck.sha256(model))
                .replace("\"cooldown_s\": 0,", "\"cooldown_s\": 0, " + extra);
    }

    /** Golden files for the fake model (output = 2 * input[:10]); {@code skew} breaks them. */
    private String goldenJson(float skew) throws IOException {
        float[] in = new float[16];
        for (int i = 0; i < in.length; i++) {
            in[i] = i / 8f - 1f;
        }
        float[] out = new float[10];
        for (int i = 0; i < out.length; i++) {
            out[i] = 2f * in[i] + (i == 3 ? skew : 0f);
        }
        Path gi = tmp.getRoot().toPath().resolve("golden_input.npy");
        Path go = tmp.getRoot().toPath().resolve("golden_output.npy");
        Files.write(gi, Npy.toBytes(new Npy.Array(new int[] {1, 1, 4, 4}, in)));
        Files.write(go, Npy.toBytes(new Npy.Array(new int[] {1, 10}, out)));
        return "\"golden\": {\"input_file\": \"" + gi.toAbsolutePath() + "\", \"output_file\": \""
                + go.toAbsolutePath() + "\", \"atol\": 1e-5, \"rtol\": 1e-4},";
    }

    /** Checks what the schema's prose adds, then keeps a copy for the Python jsonschema check. */
    private Map<String, Object> checked(JobRunner.Outcome outcome) throws Exception {
        assertNotNull("no result path", outcome.resultPath);
        Map<String, Object> doc = Json.parseObject(TestSupport.read(outcome.resultPath));
        assertEquals(outcome.status.wireName(), doc.get("status"));
        ResultWriterTest.assertInvariants(doc);
        Path copy = TestSupport.resultsOut().resolve("runner").resolve(name.getMethodName() + ".json");
        TestSupport.write(copy, Json.writePretty(doc));
        // Nothing half-written is left beside the result.
        for (java.io.File f : outcome.resultPath.toAbsolutePath().getParent().toFile().listFiles()) {
            assertFalse(f.getName(), f.getName().contains(".tmp-"));
        }
        return doc;
    }

    @Test
    public void okRunWithGoldenEnergyAndCollector() throws Exception {
        collector = new CollectorClientTest.ScriptedCollector(201);
        String text = job("ok-1", goldenJson(0f) + " \"collector_url\": \"" + collector.base()
                + "\", \"collector_token\": \"t0k\", \"run_set\": \"nightly\",")
                .replace("\"min_duration_s\": 0", "\"min_duration_s\": 10")
                .replace("\"idle_baseline_s\": 0", "\"idle_baseline_s\": 2");
        platform.thermal.add(0);
        JobRunner.Outcome o = runner(null).run(writeJob(text));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.OK, o.status);
        assertTrue(o.posted);
        assertNull(o.postError);
        assertEquals(platform.resultsDir.resolve("ok-1.json"), o.resultPath);
        assertEquals(1, collector.bodies.size());
        assertEquals(TestSupport.read(o.resultPath), collector.bodies.get(0));
        assertEquals("Bearer t0k", collector.auth.get(0));
        assertEquals("nightly", doc.get("run_set"));
        Map<?, ?> latency = (Map<?, ?>) doc.get("latency");
        // 10 s at 5 ms per run: the minimum duration, not measured_runs, decides the count.
        assertEquals(2000L, latency.get("runs"));
        assertEquals(5.0, (Double) latency.get("median_ms"), 1e-6);
        assertEquals(40.0, (Double) latency.get("init_ms"), 1e-6);
        assertEquals(3L, latency.get("warmup_runs"));
        Map<?, ?> golden = (Map<?, ?>) doc.get("golden");
        assertEquals(Boolean.TRUE, golden.get("passed"));
        assertEquals(0.0, (Double) golden.get("max_abs_diff"), 0);
        Map<?, ?> energy = (Map<?, ?>) doc.get("energy");
        assertEquals("battery", energy.get("method"));
        assertEquals("ma", energy.get("current_unit"));
        assertEquals("positive_is_discharge", energy.get("current_sign"));
        // Invariant: per inference = (busy - idle power) x latency = 1500 mW x 5 ms = 7.5 mJ.
        assertEquals(7.5, (Double) energy.get("per_inference_mj"), 7.5 * 0.01);
        assertEquals(500.0, (Double) energy.get("idle_power_mw"), 1e-6);
        Map<?, ?> runtime = (Map<?, ?>) doc.get("runtime");
        assertEquals("onnxruntime", runtime.get("name"));
        assertEquals("1.20.0", runtime.get("version"));
        assertEquals("xnnpack", runtime.get("delegate"));
        assertTrue(session.closed);
        assertTrue(sampler.stopped);
    }

    @Test
    public void withoutGoldenTheModelGetsASyntheticInputOfItsShape() throws Exception {
        JobRunner.Outcome o = runner(null).run(writeJob(job("nogold", "")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.OK, o.status);
        assertNull(doc.get("golden"));
        assertEquals(20L, ((Map<?, ?>) doc.get("latency")).get("runs"));
        assertEquals(1 + 3 + 20, session.runs);
        // No thermal API (below Android 10): null, not a made-up number.
        assertNull(((Map<?, ?>) doc.get("thermal")).get("before"));
        // No idle window: gross figures, said so.
        Map<?, ?> energy = (Map<?, ?>) doc.get("energy");
        assertNull(energy.get("idle_power_mw"));
        assertTrue((String) energy.get("note"), ((String) energy.get("note")).contains("no idle baseline"));
    }

    @Test
    public void goldenMismatchStopsBeforeTiming() throws Exception {
        JobRunner.Outcome o = runner(null).run(writeJob(job("gm", goldenJson(0.5f))));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.GOLDEN_MISMATCH, o.status);
        assertNull(doc.get("latency"));
        assertEquals(1, session.runs);
        Map<?, ?> golden = (Map<?, ?>) doc.get("golden");
        assertEquals(Boolean.FALSE, golden.get("passed"));
        assertEquals(0.5, (Double) golden.get("max_abs_diff"), 1e-6);
        assertTrue((String) doc.get("error"), ((String) doc.get("error")).contains("index 3"));
    }

    @Test
    public void loadFailureIsReportedWithTheRuntimeError() throws Exception {
        JobRunner.Outcome o = runner(new IllegalStateException("Error code - ORT_INVALID_PROTOBUF")).run(
                writeJob(job("lf", "")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.LOAD_FAILED, o.status);
        assertNull(doc.get("latency"));
        String error = (String) doc.get("error");
        assertTrue(error, error.contains("ORT_INVALID_PROTOBUF") && error.contains("model.onnx"));
        assertNotNull(doc.get("runtime"));
        assertTrue(sampler.stopped);
    }

    @Test
    public void anExceptionDuringTheLoopIsACrashWithTheStackTrace() throws Exception {
        session.onRun = new Fakes.OnRun() {
            @Override
            public void onRun(int index) {
                if (index == 7) {
                    throw new IllegalArgumentException("delegate lost its context");
                }
            }
        };
        JobRunner.Outcome o = runner(null).run(writeJob(job("crash", "")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.CRASHED, o.status);
        assertTrue((String) doc.get("error"), ((String) doc.get("error")).contains("delegate lost its context"));
        assertTrue(session.closed);
    }

    @Test
    public void outOfMemoryStillWritesAResult() throws Exception {
        session.onRun = new Fakes.OnRun() {
            @Override
            public void onRun(int index) {
                if (index == 2) {
                    throw new OutOfMemoryError("Failed to allocate a 1073741824 byte allocation");
                }
            }
        };
        JobRunner.Outcome o = runner(null).run(writeJob(job("oom", "")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.CRASHED, o.status);
        assertTrue(((String) doc.get("error")).contains("OutOfMemoryError"));
    }

    @Test
    public void malformedJobGivesInvalidJobWithAFallbackId() throws Exception {
        JobRunner.Outcome o = runner(null).run(writeJob("{\"run_id\": \"x\",,}"));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.INVALID_JOB, o.status);
        assertTrue((String) doc.get("run_id"), ((String) doc.get("run_id")).startsWith("invalid-job-"));
        assertNull(doc.get("model"));
        assertNull(doc.get("runtime"));
        assertNull(doc.get("latency"));
        assertTrue(((String) doc.get("error")).contains("malformed JSON"));
        assertEquals(0, session.runs);
    }

    @Test
    public void schemaViolationKeepsTheJobsRunId() throws Exception {
        JobRunner.Outcome o = runner(null).run(writeJob(job("keep-me", "").replace("\"threads\": 2", "\"threads\": 0")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.INVALID_JOB, o.status);
        assertEquals("keep-me", doc.get("run_id"));
        assertTrue(((String) doc.get("error")).contains("runtime.threads"));
    }

    @Test
    public void missingJobFileIsAnInvalidJobToo() throws Exception {
        JobRunner.Outcome o = runner(null).run(tmp.getRoot().toPath().resolve("absent.json"));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.INVALID_JOB, o.status);
        assertTrue(((String) doc.get("error")).contains("absent.json"));
    }

    @Test
    public void timeoutKeepsWhatWasMeasured() throws Exception {
        String text = job("to", "\"timeout_s\": 3,").replace("\"measured_runs\": 20", "\"measured_runs\": 100000");
        JobRunner.Outcome o = runner(null).run(writeJob(text));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.TIMEOUT, o.status);
        long runs = (Long) ((Map<?, ?>) doc.get("latency")).get("runs");
        assertTrue("runs " + runs, runs > 100 && runs < 700);
        assertTrue(((String) doc.get("error")).contains("timeout_s"));
    }

    @Test
    public void heatStopsTheRunWithThermalAbort() throws Exception {
        platform.thermal.add(0);
        platform.thermal.add(0);
        platform.thermal.add(1);
        platform.thermal.add(4);
        String text = job("hot", "").replace("\"min_duration_s\": 0", "\"min_duration_s\": 30");
        JobRunner.Outcome o = runner(null).run(writeJob(text));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.THERMAL_ABORT, o.status);
        Map<?, ?> thermal = (Map<?, ?>) doc.get("thermal");
        assertEquals(0L, thermal.get("before"));
        assertEquals(4L, thermal.get("after"));
        assertNotNull(doc.get("latency"));
        assertTrue(((String) doc.get("error")).contains("thermal status 4"));
    }

    @Test
    public void tooHotBeforeStartingIsAThermalAbortWithoutTiming() throws Exception {
        platform.thermal.add(3);
        JobRunner.Outcome o = runner(null).run(writeJob(job("hot0", "")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.THERMAL_ABORT, o.status);
        assertNull(doc.get("latency"));
        assertEquals(0, session.runs);
    }

    @Test
    public void cancelStopsAtTheNextCheck() throws Exception {
        final JobRunner r = runner(null);
        session.onRun = new Fakes.OnRun() {
            @Override
            public void onRun(int index) {
                if (index == 10) {
                    r.cancel();
                }
            }
        };
        String text = job("cx", "").replace("\"min_duration_s\": 0", "\"min_duration_s\": 60");
        JobRunner.Outcome o = r.run(writeJob(text));
        checked(o);
        assertEquals(Status.CANCELLED, o.status);
        assertTrue(session.runs < 400);
    }

    @Test
    public void withoutAUsableCounterEnergyIsMethodNone() throws Exception {
        sampler.unavailable = "BATTERY_PROPERTY_CURRENT_NOW unsupported on this device";
        JobRunner.Outcome o = runner(null).run(writeJob(job("noenergy", "")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.OK, o.status);
        Map<?, ?> energy = (Map<?, ?>) doc.get("energy");
        assertEquals("none", energy.get("method"));
        assertNull(energy.get("per_inference_mj"));
        assertTrue(((String) energy.get("note")).contains("unsupported"));
    }

    @Test
    public void resultFileFromTheJobAndAnUnreachableCollector() throws Exception {
        Path target = tmp.getRoot().toPath().resolve("elsewhere").resolve("r.json");
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
            port = s.getLocalPort();
        }
        String text = job("rf", "\"result_file\": \"" + target.toAbsolutePath() + "\", \"collector_url\":"
                + " \"http://127.0.0.1:" + port + "\",");
        JobRunner.Outcome o = runner(null).run(writeJob(text));
        checked(o);
        assertEquals(Status.OK, o.status);
        assertEquals(target, o.resultPath);
        assertFalse(o.posted);
        assertTrue(o.postError, o.postError.contains("after 2 attempts"));
        List<String> logs = platform.logs;
        assertTrue(logs.toString(), logs.toString().contains("written to " + target));
    }

    @Test
    public void aStaleOrTruncatedModelFileIsLoadFailedBeforeLoading() throws Exception {
        String text = job("stale", "");
        Files.write(tmp.getRoot().toPath().resolve("model.onnx"), "another model".getBytes("UTF-8"));
        JobRunner.Outcome o = runner(null).run(writeJob(text));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.LOAD_FAILED, o.status);
        assertTrue((String) doc.get("error"), ((String) doc.get("error")).contains("bytes, the job expects"));
        assertEquals(0, session.runs);
    }

    @Test
    public void energyNoteCarriesTheCounters() throws Exception {
        JobRunner.Outcome o = runner(null).run(writeJob(job("counters", "")));
        Map<String, Object> doc = checked(o);
        String note = (String) ((Map<?, ?>) doc.get("energy")).get("note");
        assertTrue(note, note.contains("charge counter 3000000 -> 2999000 uAh"));
    }

    @Test
    public void anUnwritableResultFileFallsBackToTheAppFolder() throws Exception {
        Path blocker = tmp.newFile("not-a-folder").toPath();
        String text = job("fallback", "\"result_file\": \"" + blocker.toAbsolutePath() + "/r.json\",");
        JobRunner.Outcome o = runner(null).run(writeJob(text));
        checked(o);
        assertEquals(platform.resultsDir.resolve("fallback.json"), o.resultPath);
        assertTrue(platform.logs.toString(), platform.logs.toString().contains("instead"));
    }

    @Test
    public void aMissingGoldenFileIsLoadFailedNamingIt() throws Exception {
        String text = job("nogoldfile", goldenJson(0f));
        Files.delete(tmp.getRoot().toPath().resolve("golden_output.npy"));
        JobRunner.Outcome o = runner(null).run(writeJob(text));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.LOAD_FAILED, o.status);
        assertTrue((String) doc.get("error"), ((String) doc.get("error")).contains("golden_output.npy"));
    }

    @Test
    public void unusableReadingsLeaveTheLatencyIntactWithEnergyNone() throws Exception {
        sampler = new Fakes.FakeSampler(session, 500, 2000, false) {
            @Override
            public List<EnergyIntegrator.Sample> stop() {
                List<EnergyIntegrator.Sample> out = super.stop();
                out.add(null); // a broken sampler: the integrator cannot use this list
                return out;
            }
        };
        JobRunner.Outcome o = runner(null).run(writeJob(job("badenergy", "")));
        Map<String, Object> doc = checked(o);
        assertEquals(Status.OK, o.status);
        assertNotNull(doc.get("latency"));
        Map<?, ?> energy = (Map<?, ?>) doc.get("energy");
        assertEquals("none", energy.get("method"));
        assertTrue((String) energy.get("note"), ((String) energy.get("note")).contains("could not be computed"));
    }
}
