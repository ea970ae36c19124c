package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class JobTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private static JobException rejection(String text) {
        try {
            Job.parse(text, "test");
        } catch (JobException e) {
            return e;
        }
        fail("expected the job to be rejected:\n" + text);
        return null;
    }

    @Test
    public void acceptsEveryValidSharedFixture() throws Exception {
        for (Path p : TestSupport.fixtures("job", "valid")) {
            Map<String, Object> doc = Json.parseObject(TestSupport.read(p));
            assertFalse(p + " is a valid fixture but carries _why", doc.containsKey("_why"));
            try {
                Job job = Job.fromMap(doc, p.toString());
                assertEquals(doc.get("run_id"), job.runId);
                assertNotNull(job.format);
                assertNotNull(job.runtime.delegate);
                assertNotNull(job.energy.currentUnit);
            } catch (JobException e) {
                fail("valid fixture " + p.getFileName() + " rejected: " + e.getMessage());
            }
        }
    }

    @Test
    public void rejectsEveryInvalidSharedFixtureForItsOwnReason() throws Exception {
        for (Path p : TestSupport.fixtures("job", "invalid")) {
            Map<String, Object> doc = Json.parseObject(TestSupport.read(p));
            Object why = doc.get("_why");
            assertTrue(p + " has no _why string", why instanceof String);
            // Fixture notes are top-level keys starting with '_' (results.schema.strip_fixture_metadata).
            for (String key : new ArrayList<String>(doc.keySet())) {
                if (key.startsWith("_")) {
                    doc.remove(key);
                }
            }
            try {
                Job.fromMap(doc, p.toString());
                fail("invalid fixture " + p.getFileName() + " accepted (" + why + ")");
            } catch (JobException e) {
                assertFalse(e.problems().isEmpty());
                for (String problem : e.problems()) {
                    // Every problem names a field ("runtime.threads: ...").
                    assertTrue(problem, problem.matches("^[a-z_][a-z0-9_.]*: .+"));
                }
            }
        }
    }

    @Test
    public void minimalJobGetsTheSchemaDefaults() throws Exception {
        Job job = Job.parse(TestSupport.minimalJob("r1", "/data/local/tmp/m.onnx"), "test");
        assertEquals(Job.CurrentUnit.AUTO, job.energy.currentUnit);
        assertEquals(Job.CurrentSign.AUTO, job.energy.currentSign);
        assertTrue(job.energy.preferOdpm);
        assertNull(job.golden);
        assertNull(job.collectorUrl);
        assertNull(job.collectorResultsEndpoint());
        assertNull(job.timeoutS);
        assertEquals(Job.Format.ONNX, job.format);
        assertEquals(Job.Delegate.XNNPACK, job.runtime.delegate);
        assertEquals(2, job.runtime.threads);
        assertEquals(215432L, job.modelBytes);
        assertEquals("dense", job.modelSection().get("mode"));
    }

    @Test
    public void collectsEveryProblemNamingEachField() {
        String text = TestSupport.minimalJob("r1", "relative/model.onnx")
                .replace("\"threads\": 2", "\"threads\": 0")
                .replace("\"format\": \"onnx\"", "\"format\": \"pt\"")
                .replace("\"measured_runs\": 20", "\"measured_runs\": 2.5")
                .replace("\"idle_baseline_s\": 0", "\"idle_baseline_s\": 0, \"current_unit\": \"amps\", \"x\": 1");
        List<String> problems = rejection(text).problems();
        String all = problems.toString();
        assertTrue(all, all.contains("model_file: must be an absolute device path"));
        assertTrue(all, all.contains("runtime.threads: must be between 1 and 64, got 0"));
        assertTrue(all, all.contains("format: must be one of onnx, tflite, got \"pt\""));
        assertTrue(all, all.contains("measured_runs: must be an integer, got 2.5"));
        assertTrue(all, all.contains("energy.current_unit: must be one of auto, ua, ma"));
        assertTrue(all, all.contains("energy.x: unknown key"));
        assertEquals(all, 6, problems.size());
    }

    @Test
    public void integralFloatsCountAsIntegersLikeJsonSchema() throws Exception {
        Job job = Job.parse(TestSupport.minimalJob("r1", "/m.onnx").replace("\"threads\": 2", "\"threads\": 4.0"),
                "test");
        assertEquals(4, job.runtime.threads);
        rejection(TestSupport.minimalJob("r1", "/m.onnx").replace("\"threads\": 2", "\"threads\": true"));
        rejection(TestSupport.minimalJob("r1", "/m.onnx").replace("\"schema_version\": 1", "\"schema_version\": 2"));
        rejection(TestSupport.minimalJob("r1", "/m.onnx").replace("\"schema_version\": 1", "\"schema_version\": true"));
    }

    @Test
    public void nullableFieldsTakeNullButRequiredOnesDoNot() throws Exception {
        String base = TestSupport.minimalJob("r1", "/m.onnx");
        String withNulls = base.replace("\"cooldown_s\": 0,", "\"cooldown_s\": 0, \"golden\": null, \"collector_url\":"
                + " null, \"result_file\": null, \"run_set\": null, \"budget_trace\": null,");
        assertNull(Job.parse(withNulls, "t").golden);
        assertTrue(rejection(base.replace("\"mode\": \"dense\"", "\"mode\": null")).problems().toString()
                .contains("mode: must not be null"));
        assertTrue(rejection(base.replace("\"cooldown_s\": 0,", "\"cooldown_s\": 0, \"timeout_s\": 0,")).problems()
                .toString().contains("timeout_s: must be > 0"));
    }

    @Test
    public void runIdMustBeSafeAsAFileName() {
        for (String bad : new String[] {"../x", "a/b", "-lead", "", "a b", "x\\n"}) {
            String text = TestSupport.minimalJob("PLACEHOLDER", "/m.onnx").replace("PLACEHOLDER", bad);
            assertTrue(bad, rejection(text).problems().toString().contains("run_id"));
        }
    }

    @Test
    public void collectorUrlBecomesTheResultsEndpoint() throws Exception {
        String base = TestSupport.minimalJob("r1", "/m.onnx");
        Job job = Job.parse(base.replace("\"cooldown_s\": 0,", "\"cooldown_s\": 0, \"collector_url\":"
                + " \"http://10.0.2.2:8765/\", \"collector_token\": \"s3cret\","), "t");
        assertEquals("http://10.0.2.2:8765/api/v1/results", job.collectorResultsEndpoint());
        assertEquals("s3cret", job.collectorToken);
        for (String bad : new String[] {"ftp://h/x", "http://", "http://a b", "10.0.2.2:8765"}) {
            String text = base.replace("\"cooldown_s\": 0,", "\"cooldown_s\": 0, \"collector_url\": \"" + bad + "\",");
            assertTrue(bad, rejection(text).problems().toString().contains("collector_url"));
        }
    }

    @Test
    public void goldenNeedsAllFourFields() {
        String text = TestSupport.minimalJob("r1", "/m.onnx").replace("\"cooldown_s\": 0,",
                "\"cooldown_s\": 0, \"golden\": {\"input_file\": \"/g/in.npy\", \"atol\": -1, \"rtol\": 0},");
        String all = rejection(text).problems().toString();
        assertTrue(all, all.contains("golden.output_file: required but missing"));
        assertTrue(all, all.contains("golden.atol: must be >= 0"));
    }

    @Test
    public void loadReportsUnreadableAndMalformedFiles() throws Exception {
        Path missing = tmp.getRoot().toPath().resolve("nope.json");
        try {
            Job.load(missing);
            fail();
        } catch (JobException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("nope.json") && e.getMessage().contains("cannot read"));
        }
        Path broken = tmp.newFile("broken.json").toPath();
        Files.write(broken, "{\"run_id\": \"x\",}".getBytes(StandardCharsets.UTF_8));
        try {
            Job.load(broken);
            fail();
        } catch (JobException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("malformed JSON: line 1"));
            assertNotNull(e.nextStep());
        }
        Path latin1 = tmp.newFile("latin1.json").toPath();
        Files.write(latin1, new byte[] {'{', '"', (byte) 0xe9, '"', ':', '1', '}'});
        try {
            Job.load(latin1);
            fail();
        } catch (JobException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("UTF-8"));
        }
        Path good = tmp.newFile("good.json").toPath();
        Files.write(good, TestSupport.minimalJob("r9", "/m.onnx").getBytes(StandardCharsets.UTF_8));
        assertEquals("r9", Job.load(good).runId);
    }

    @Test
    public void unknownKeysListTheAllowedOnes() {
        List<String> problems = new ArrayList<String>(rejection(TestSupport.minimalJob("r1", "/m.onnx")
                .replace("\"runtime\": {\"threads\": 2,", "\"runtime\": {\"threads\": 2, \"thread\": 3,")).problems());
        assertEquals(1, problems.size());
        assertEquals("runtime.thread: unknown key (allowed: threads, delegate)", problems.get(0));
    }
}
