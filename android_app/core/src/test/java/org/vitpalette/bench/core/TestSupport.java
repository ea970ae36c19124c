package org.vitpalette.bench.core;

import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Paths shared by the tests: the contract fixtures and the folder for produced results. */
final class TestSupport {
    private TestSupport() {
    }

    /** tests/fixtures/contracts (system property contracts.dir, else relative to android_app/core). */
    static Path contractsDir() {
        String prop = System.getProperty("contracts.dir");
        Path p = prop != null ? Paths.get(prop) : Paths.get("../../tests/fixtures/contracts");
        assertTrue("contract fixtures not found at " + p.toAbsolutePath()
                + " (run from android_app/core or pass -Dcontracts.dir)", Files.isDirectory(p));
        return p;
    }

    /** Where tests drop the result documents they produce, for the Python jsonschema check. */
    static Path resultsOut() throws IOException {
        String prop = System.getProperty("results.out");
        Path p = prop != null ? Paths.get(prop) : Paths.get("build/contract-results");
        Files.createDirectories(p);
        return p;
    }

    /** The *.json files of one fixture folder, sorted; fails when the folder is empty. */
    static List<Path> fixtures(String kind, String validity) {
        File dir = contractsDir().resolve(kind).resolve(validity).toFile();
        File[] files = dir.listFiles();
        List<Path> out = new ArrayList<Path>();
        if (files != null) {
            Arrays.sort(files);
            for (File f : files) {
                if (f.getName().endsWith(".json")) {
                    out.add(f.toPath());
                }
            }
        }
        assertTrue("no fixtures in " + dir, !out.isEmpty());
        return out;
    }

    static String read(Path p) throws IOException {
        return new String(Files.readAllBytes(p), StandardCharsets.UTF_8);
    }

    static void write(Path p, String text) throws IOException {
        Files.createDirectories(p.toAbsolutePath().getParent());
        Files.write(p, text.getBytes(StandardCharsets.UTF_8));
    }

    /** A valid job document as text, with fields overridable by simple string replacement. */
    static String minimalJob(String runId, String modelFile) {
        return "{\n"
                + "  \"schema_version\": 1,\n"
                + "  \"run_id\": \"" + runId + "\",\n"
                + "  \"model_name\": \"default\",\n"
                + "  \"model_file\": \"" + modelFile + "\",\n"
                + "  \"format\": \"onnx\",\n"
                + "  \"mode\": \"dense\",\n"
                + "  \"model_sha256\": \"3f6c2a9b0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c\",\n"
                + "  \"model_bytes\": 215432,\n"
                + "  \"runtime\": {\"threads\": 2, \"delegate\": \"xnnpack\"},\n"
                + "  \"warmup_runs\": 3,\n"
                + "  \"measured_runs\": 20,\n"
                + "  \"min_duration_s\": 0,\n"
                + "  \"cooldown_s\": 0,\n"
                + "  \"energy\": {\"sample_interval_ms\": 100, \"idle_baseline_s\": 0}\n"
                + "}\n";
    }
}
