package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;
import org.junit.rules.TestName;

/**
 * Budget-trace jobs on fakes: one scripted session per configuration file (its latency per run is
 * fixed on the fake clock), the selector's choice per frame, and the result's budget_trace section.
 */
public class BudgetTraceTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();
    @Rule
    public TestName name = new TestName();

    private Fakes.FakePlatform platform;
    private Fakes.FakeSession full;
    private Fakes.FakeSession light;
    private ScriptedLoader loader;

    /** Opens the session scripted for the job's model file; an unknown file or an unused session fails. */
    static final class ScriptedLoader implements ModelLoader {
        final Map<String, Fakes.FakeSession> byFile = new LinkedHashMap<String, Fakes.FakeSession>();
        final Map<String, Job.Format> formats = new LinkedHashMap<String, Job.Format>();

        @Override
        public ModelSession load(Job job) {
            Fakes.FakeSession s = byFile.get(job.modelFile);
            if (s == null) {
                throw new AssertionError("loader asked for " + job.modelFile + ", scripted: " + byFile.keySet());
            }
            if (formats.containsKey(job.modelFile)) {
                throw new AssertionError(job.modelFile + " loaded twice");
            }
            formats.put(job.modelFile, job.format);
            s.platform.advanceMs(40);
            return s;
        }

        void assertAllRan() {
            for (Map.Entry<String, Fakes.FakeSession> e : byFile.entrySet()) {
                assertTrue("scripted session for " + e.getKey() + " was never run", e.getValue().runs > 0);
                assertTrue("session for " + e.getKey() + " was not closed", e.getValue().closed);
            }
        }
    }

    @Before
    public void setUp() {
        platform = new Fakes.FakePlatform(tmp.getRoot().toPath().resolve("files").resolve("results"));
        full = new Fakes.FakeSession(platform, 10.0, new int[] {1, 16}, 10);
        light = new Fakes.FakeSession(platform, 2.0, new int[] {1, 16}, 10);
        loader = new ScriptedLoader();
    }

    private Path model(String fileName, String content) throws IOException {
        Path p = tmp.getRoot().toPath().resolve(fileName);
        Files.write(p, content.getBytes("UTF-8"));
        return p.toAbsolutePath();
    }

    /** full.onnx (cost 9 ms, accuracy 0.9) is the job's model; light.tflite (cost 1.5, 0.6) is the cheap one. */
    private Path traceJob(String runId, String budgets, String frames, String lightSha) throws IOException {
        Path f = model("full.onnx", "full configuration");
        Path l = model("light.tflite", "light configuration");
        loader.byFile.put(f.toString(), full);
        loader.byFile.put(l.toString(), light);
        String sha = lightSha != null ? lightSha : ModelFileCheck.sha256(l);
        String trace = "\"budget_trace\": {\"configurations\": ["
                + "{\"name\": \"full\", \"file\": \"" + f + "\", \"sha256\": \"" + ModelFileCheck.sha256(f)
                + "\", \"cost_ms\": 9, \"accuracy\": 0.9},"
                + "{\"name\": \"light\", \"file\": \"" + l + "\", \"sha256\": \"" + sha
                + "\", \"cost_ms\": 1.5, \"accuracy\": 0.6}],"
                + " \"budgets_ms\": " + budgets + (frames == null ? "" : ", \"frames\": " + frames) + "},";
        String text = TestSupport.minimalJob(runId, f.toString())
                .replace("\"model_bytes\": 215432", "\"model_bytes\": " + Files.size(f))
                .replace("3f6c2a9b0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c", ModelFileCheck.sha256(f))
                .replace("\"cooldown_s\": 0,", "\"cooldown_s\": 0, " + trace)
                .replace("\"runtime\": {\"threads\": 2, \"delegate\": \"xnnpack\"}",
                        "\"runtime\": {\"threads\": 2, \"delegate\": \"cpu\"}");
        Path job = tmp.getRoot().toPath().resolve("job.json");
        TestSupport.write(job, text);
        return job;
    }

    private JobRunner runner() {
        Fakes.FakeSampler sampler = new Fakes.FakeSampler(full, 500, 2000, false);
        CollectorClient client = new CollectorClient(1, 1, 1, 1000, 1000, new CollectorClient.Sleeper() {
            @Override
            public void sleep(long ms) {
                throw new AssertionError("no collector in these jobs");
            }
        });
        return new JobRunner(platform, loader, sampler, client);
    }

    private Map<String, Object> checked(JobRunner.Outcome o) throws Exception {
        assertNotNull("no result path", o.resultPath);
        Map<String, Object> doc = Json.parseObject(TestSupport.read(o.resultPath));
        ResultWriterTest.assertInvariants(doc);
        TestSupport.write(TestSupport.resultsOut().resolve("trace").resolve(name.getMethodName() + ".json"),
                Json.writePretty(doc));
        return doc;
    }

    @SuppressWarnings("unchecked")
    @Test
    public void framesFollowTheSelectorAndTheCountsAddUp() throws Exception {
        // budgets repeat after six frames; 1.8 ms fits light by cost but light takes 2 ms; 0.5 fits nothing
        Path job = traceJob("trace-1", "[20, 3, 20, 1.8, 0.5, 3]", "8", null);
        JobRunner.Outcome o = runner().run(job);
        Map<String, Object> doc = checked(o);
        assertEquals(doc.get("error") + "", Status.OK, o.status);
        loader.assertAllRan();
        assertEquals(Job.Format.TFLITE, loader.formats.get(tmp.getRoot().toPath().resolve("light.tflite")
                .toAbsolutePath().toString()));

        Map<String, Object> bt = (Map<String, Object>) doc.get("budget_trace");
        assertNotNull(bt);
        List<Object> perFrame = (List<Object>) bt.get("per_frame");
        String[] expected = {"full", "light", "full", "light", "light", "light", "full", "light"};
        double[] budgets = {20, 3, 20, 1.8, 0.5, 3, 20, 3};
        assertEquals(8, perFrame.size());
        for (int i = 0; i < 8; i++) {
            Map<String, Object> f = (Map<String, Object>) perFrame.get(i);
            assertEquals("frame " + i, expected[i], f.get("config"));
            assertEquals(budgets[i], ((Number) f.get("budget_ms")).doubleValue(), 0);
            double lat = ((Number) f.get("latency_ms")).doubleValue();
            assertEquals(expected[i].equals("full") ? 10.0 : 2.0, lat, 1e-6);
            assertEquals("frame " + i, lat > budgets[i], f.get("missed"));
        }
        assertEquals(8L, bt.get("frames"));
        assertEquals(2L, bt.get("deadline_misses"));
        assertEquals(1L, bt.get("nothing_fit"));
        assertEquals(5L, bt.get("switches"));
        assertEquals((3 * 0.9 + 5 * 0.6) / 8, ((Number) bt.get("mean_accuracy")).doubleValue(), 1e-12);
        assertEquals((3 * 10.0 + 5 * 2.0) / 8, ((Number) bt.get("latency_mean_ms")).doubleValue(), 1e-6);
        Map<String, Object> counts = (Map<String, Object>) bt.get("frames_per_config");
        assertEquals(3L, counts.get("full"));
        assertEquals(5L, counts.get("light"));
        Map<String, Object> latency = (Map<String, Object>) doc.get("latency");
        assertEquals(8L, latency.get("runs"));
        // warm-up: 3 per configuration, plus the first inference on the main model
        assertEquals(1 + 3 + 3, full.runs);
        assertEquals(3 + 5, light.runs);
        Map<String, Object> energy = (Map<String, Object>) doc.get("energy");
        assertEquals("battery", energy.get("method"));
    }

    @Test
    public void aConfigurationWithAnotherSha256IsLoadFailedBeforeLoadingIt() throws Exception {
        char[] zeros = new char[64];
        Arrays.fill(zeros, '0');
        Path job = traceJob("trace-bad", "[5]", null, new String(zeros));
        loader.byFile.remove(tmp.getRoot().toPath().resolve("light.tflite").toAbsolutePath().toString());
        JobRunner.Outcome o = runner().run(job);
        Map<String, Object> doc = checked(o);
        assertEquals(Status.LOAD_FAILED, o.status);
        String error = (String) doc.get("error");
        assertTrue(error, error.contains("\"light\"") && error.contains("sha256"));
        assertNull(doc.get("latency"));
        assertFalse(doc.containsKey("budget_trace") && doc.get("budget_trace") != null);
        assertTrue("main session left open", full.closed);
    }

    @Test
    public void jobParsingKeepsTheTraceAndRepeatsBudgets() throws Exception {
        Job job = Job.load(traceJob("trace-parse", "[4, 8]", null, null));
        assertNotNull(job.budgetTrace);
        assertEquals(2, job.budgetTrace.frames);
        assertEquals(4.0, job.budgetTrace.budgetMs(2), 0);
        assertEquals("light", job.budgetTrace.configurations.get(1).name);
        Job light = job.forConfiguration(job.budgetTrace.configurations.get(1));
        assertEquals(Job.Format.TFLITE, light.format);
        assertNull(light.golden);
        assertNull(light.budgetTrace);
        try {
            Job.parse(TestSupport.read(traceJob("trace-zero", "[4, 0]", null, null)), "test");
            fail("a zero budget was accepted");
        } catch (JobException e) {
            assertTrue(e.problems().toString(), e.problems().toString().contains("budget_trace.budgets_ms.1"));
        }
    }
}
