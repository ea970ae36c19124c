package org.vitpalette.bench.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * Picks, per frame, the most accurate skip configuration whose cost fits the frame's budget.
 *
 * <p>The same rule as the host's {@code pipeline/dynamic/selector.py}; both are tested against the
 * shared fixtures in {@code tests/fixtures/budget/*.json}. The rule, exactly:
 *
 * <ol>
 *   <li>a configuration fits when {@code costMs <= budgetMs};
 *   <li>among those that fit: the highest accuracy; on equal accuracy the lower cost; on equal
 *       both, the one listed first;
 *   <li>when none fits: the cheapest; on equal cost the higher accuracy; on equal both, the one
 *       listed first; the choice says it missed.
 * </ol>
 *
 * <p>The configurations may be given in any order. Why a linear scan and no sorting: fronts are
 * a handful of entries, the rule's tie-breaks by position stay obvious, and a per-frame call
 * allocates nothing.
 */
public final class BudgetSelector {
    /** One configuration the selector can pick. */
    public static final class Entry {
        public final String name;
        public final double costMs;
        public final double accuracy;
        /** Model file of this configuration (may be null when only the choice matters). */
        public final String file;

        public Entry(String name, double costMs, double accuracy, String file) {
            if (name == null || name.isEmpty()) {
                throw new IllegalArgumentException("front entry name must be a non-empty string");
            }
            if (Double.isNaN(costMs) || Double.isInfinite(costMs) || costMs < 0) {
                throw new IllegalArgumentException("front entry " + name + ": cost_ms must be a finite number >= 0, got "
                        + costMs);
            }
            if (Double.isNaN(accuracy) || Double.isInfinite(accuracy)) {
                throw new IllegalArgumentException("front entry " + name + ": accuracy must be a finite number, got "
                        + accuracy);
            }
            this.name = name;
            this.costMs = costMs;
            this.accuracy = accuracy;
            this.file = file;
        }
    }

    /** What was picked for one budget. */
    public static final class Choice {
        public final Entry entry;
        /** Position of the entry in the front as given. */
        public final int index;
        /** False when nothing fits and the cheapest was taken (a deadline miss is expected). */
        public final boolean fits;

        Choice(Entry entry, int index, boolean fits) {
            this.entry = entry;
            this.index = index;
            this.fits = fits;
        }
    }

    private final List<Entry> front;

    public BudgetSelector(List<Entry> front) {
        if (front == null || front.isEmpty()) {
            throw new IllegalArgumentException("the front is empty: there is no configuration to select");
        }
        this.front = Collections.unmodifiableList(new ArrayList<Entry>(front));
    }

    /** Builds a selector from parsed JSON entries ({@code name}, {@code cost_ms}, {@code accuracy}, {@code file}). */
    public static BudgetSelector fromJson(List<?> entries) {
        if (entries == null) {
            throw new IllegalArgumentException("the front is missing");
        }
        List<Entry> out = new ArrayList<Entry>();
        for (Object o : entries) {
            if (!(o instanceof Map)) {
                throw new IllegalArgumentException("front entry must be an object, found " + Json.typeName(o));
            }
            Map<?, ?> m = (Map<?, ?>) o;
            Object name = m.get("name");
            Object file = m.get("file");
            out.add(new Entry(name instanceof String ? (String) name : null, number(m, "cost_ms"),
                    number(m, "accuracy"), file instanceof String ? (String) file : null));
        }
        return new BudgetSelector(out);
    }

    private static double number(Map<?, ?> m, String key) {
        Object v = m.get(key);
        if (!(v instanceof Number)) {
            throw new IllegalArgumentException("front entry " + m.get("name") + ": " + key + " must be a number, found "
                    + Json.typeName(v));
        }
        return ((Number) v).doubleValue();
    }

    public List<Entry> front() {
        return front;
    }

    /** The choice for {@code budgetMs} by the rule in the class comment. */
    public Choice select(double budgetMs) {
        if (Double.isNaN(budgetMs)) {
            throw new IllegalArgumentException("budget_ms must be a number, got NaN");
        }
        int best = -1;
        for (int i = 0; i < front.size(); i++) {
            Entry e = front.get(i);
            if (e.costMs > budgetMs) {
                continue;
            }
            if (best < 0) {
                best = i;
                continue;
            }
            Entry b = front.get(best);
            if (e.accuracy > b.accuracy || (e.accuracy == b.accuracy && e.costMs < b.costMs)) {
                best = i;
            }
        }
        if (best >= 0) {
            return new Choice(front.get(best), best, true);
        }
        int cheapest = 0;
        for (int i = 1; i < front.size(); i++) {
            Entry e = front.get(i);
            Entry c = front.get(cheapest);
            if (e.costMs < c.costMs || (e.costMs == c.costMs && e.accuracy > c.accuracy)) {
                cheapest = i;
            }
        }
        return new Choice(front.get(cheapest), cheapest, false);
    }
}
