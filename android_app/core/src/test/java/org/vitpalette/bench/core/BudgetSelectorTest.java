package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.Test;

public class BudgetSelectorTest {
    /** tests/fixtures/budget: beside the contract fixtures (-Dcontracts.dir), else relative to android_app/core. */
    static Path budgetDir() {
        String prop = System.getProperty("contracts.dir");
        Path p = prop != null ? Paths.get(prop).resolveSibling("budget") : Paths.get("../../tests/fixtures/budget");
        if (!Files.isDirectory(p)) {
            p = Paths.get("../../tests/fixtures/budget");
        }
        assertTrue("budget fixtures not found at " + p.toAbsolutePath(), Files.isDirectory(p));
        return p;
    }

    static List<Path> fixtures() {
        File[] files = budgetDir().toFile().listFiles();
        List<Path> out = new ArrayList<Path>();
        if (files != null) {
            Arrays.sort(files);
            for (File f : files) {
                if (f.getName().endsWith(".json")) {
                    out.add(f.toPath());
                }
            }
        }
        assertTrue("no budget fixtures in " + budgetDir(), out.size() >= 5);
        return out;
    }

    @Test
    public void picksWhatEverySharedFixtureExpects() throws Exception {
        int cases = 0;
        for (Path p : fixtures()) {
            Map<String, Object> doc = Json.parseObject(TestSupport.read(p));
            BudgetSelector selector = BudgetSelector.fromJson((List<?>) doc.get("front"));
            for (Object o : (List<?>) doc.get("cases")) {
                Map<?, ?> c = (Map<?, ?>) o;
                double budget = ((Number) c.get("budget_ms")).doubleValue();
                BudgetSelector.Choice choice = selector.select(budget);
                String where = p.getFileName() + " budget " + budget;
                assertEquals(where, c.get("pick"), choice.entry.name);
                assertEquals(where, c.get("fits"), choice.fits);
                assertEquals(where, choice.entry, selector.front().get(choice.index));
                cases++;
            }
        }
        assertTrue("too few fixture cases: " + cases, cases >= 40);
    }

    @Test
    public void neverPicksOverBudgetWhenSomethingFits() {
        Random rng = new Random(11);
        for (int round = 0; round < 500; round++) {
            int n = 1 + rng.nextInt(8);
            List<BudgetSelector.Entry> front = new ArrayList<BudgetSelector.Entry>();
            for (int i = 0; i < n; i++) {
                front.add(new BudgetSelector.Entry("c" + i, rng.nextInt(20) * 0.5, rng.nextInt(10) / 10.0, null));
            }
            BudgetSelector selector = new BudgetSelector(front);
            double budget = rng.nextInt(24) * 0.5 - 1.0;
            BudgetSelector.Choice choice = selector.select(budget);
            boolean anyFits = false;
            double bestAccuracy = Double.NEGATIVE_INFINITY;
            for (BudgetSelector.Entry e : front) {
                if (e.costMs <= budget) {
                    anyFits = true;
                    bestAccuracy = Math.max(bestAccuracy, e.accuracy);
                }
            }
            assertEquals(anyFits, choice.fits);
            if (anyFits) {
                assertTrue(choice.entry.costMs <= budget);
                assertEquals(bestAccuracy, choice.entry.accuracy, 0.0);
            } else {
                for (BudgetSelector.Entry e : front) {
                    assertTrue(choice.entry.costMs <= e.costMs);
                }
            }
        }
    }

    @Test
    public void rejectsAnEmptyFrontAndBadEntries() {
        try {
            new BudgetSelector(new ArrayList<BudgetSelector.Entry>());
            fail("an empty front was accepted");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("empty"));
        }
        try {
            new BudgetSelector.Entry("x", Double.NaN, 0.5, null);
            fail("a NaN cost was accepted");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("cost_ms"));
        }
        try {
            BudgetSelector.fromJson(Arrays.asList((Object) "not an object"));
            fail("a string entry was accepted");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("object"));
        }
        BudgetSelector one = new BudgetSelector(Arrays.asList(new BudgetSelector.Entry("full", 1.0, 0.9, "m.onnx")));
        try {
            one.select(Double.NaN);
            fail("a NaN budget was accepted");
        } catch (IllegalArgumentException e) {
            assertFalse(e.getMessage().isEmpty());
        }
    }
}
