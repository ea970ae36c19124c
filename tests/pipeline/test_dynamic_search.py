"""Pareto front, beam / exhaustive search and the budget selector (Python side of the shared fixtures)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from pipeline.dynamic.search import Candidate, SearchConfig, dominates, pareto_front, search, spread
from pipeline.dynamic.selector import FrontEntry, select_for_budget, select_trace
from pipeline.dynamic.skip import SkipUnit
from pipeline.errors import ConfigError

BUDGET_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "budget"
OBJ = {"accuracy": "max", "latency_ms": "min"}



def _random_points(rng: random.Random) -> list[dict]:
    """Few distinct values, so ties and duplicates are common."""
    return [{"accuracy": rng.choice([0.1, 0.5, 0.5, 0.7, 0.9, 1.0]),
             "latency_ms": rng.choice([1.0, 2.0, 2.0, 3.5, 8.0]),
             "energy_mj": rng.choice([0.0, 1.5, 3.0, 9.5])} for _ in range(rng.randint(0, 12))]


# --------------------------------------------------------------------------------------- Pareto

@pytest.mark.parametrize("seed", range(150))
def test_front_keeps_exactly_the_non_dominated_points(seed) -> None:
    rng = random.Random(seed)
    pts = _random_points(rng)
    obj = dict(OBJ, energy_mj="min") if seed % 2 else OBJ
    front = pareto_front(pts, obj)
    ids = {id(p) for p in front}
    for p in pts:
        dominated = any(
            all((q[k] >= p[k]) if s == "max" else (q[k] <= p[k]) for k, s in obj.items())
            and any((q[k] > p[k]) if s == "max" else (q[k] < p[k]) for k, s in obj.items())
            for q in pts
        )
        assert (id(p) in ids) == (not dominated), (p, pts)
    assert [p for p in pts if id(p) in ids] == front          # input order kept


def test_front_on_a_hand_made_example() -> None:
    pts = [
        {"name": "full", "accuracy": 0.99, "latency_ms": 10.0},
        {"name": "a", "accuracy": 0.97, "latency_ms": 8.0},
        {"name": "dominated", "accuracy": 0.96, "latency_ms": 9.0},
        {"name": "b", "accuracy": 0.90, "latency_ms": 5.0},
        {"name": "twin-b", "accuracy": 0.90, "latency_ms": 5.0},
        {"name": "slow-bad", "accuracy": 0.5, "latency_ms": 11.0},
    ]
    assert [p["name"] for p in pareto_front(pts, OBJ)] == ["full", "a", "b", "twin-b"]
    assert dominates(pts[1], pts[2], OBJ) and not dominates(pts[3], pts[4], OBJ)
    with pytest.raises(ConfigError, match="'max' or 'min'"):
        pareto_front(pts, {"accuracy": "up"})
    with pytest.raises(ConfigError, match="lacks objective 'energy_mj'"):
        pareto_front(pts, {"accuracy": "max", "energy_mj": "min"})


# --------------------------------------------------------------------------------------- search

def _units(n: int) -> list[SkipUnit]:
    return [SkipUnit(f"blocks.{i // 2}.{'attn' if i % 2 == 0 else 'mlp'}", f"blocks.{i // 2}",
                     "attn" if i % 2 == 0 else "mlp", "attn" if i % 2 == 0 else "mlp", (), False, "prenorm", i // 2)
            for i in range(n)]


def _synthetic(units):
    """Accuracy falls by a per-unit harm, with one harmful interaction; cost falls per unit."""
    harm = {u.name: 0.01 * (i % 5) + 0.002 * i for i, u in enumerate(units)}
    saving = {u.name: 100 + 7 * i for i, u in enumerate(units)}

    def evaluate(skipped):
        extra = 0.2 if {units[0].name, units[1].name} <= set(skipped) else 0.0
        return 0.99 - sum(harm[n] for n in skipped) - extra

    def cost(skipped):
        return 10_000 - sum(saving[n] for n in skipped)

    return evaluate, cost


def test_exhaustive_search_visits_every_configuration_once() -> None:
    units = _units(5)
    evaluate, cost = _synthetic(units)
    calls = []
    found = search(lambda s: calls.append(s) or evaluate(s), units, cost, SearchConfig(exhaustive_limit=32))
    assert len(found) == 32 == len(set(calls)) == len(calls)
    assert found[0].skipped == frozenset() and found[0].flops == 10_000


def test_beam_search_finds_the_greedy_path_and_keeps_everything_it_evaluated() -> None:
    units = _units(8)
    evaluate, cost = _synthetic(units)
    greedy = search(evaluate, units, cost, SearchConfig(beam_width=1, exhaustive_limit=0))
    assert len(greedy) == 1 + sum(range(1, 9))            # n + (n-1) + ... + 1 children, plus the full model
    by_size: dict[int, list[Candidate]] = {}
    for c in greedy:
        by_size.setdefault(len(c.skipped), []).append(c)
    # greedy: each level extends the best configuration of the level before
    for k in range(1, 8):
        best = max(by_size[k], key=lambda c: (c.accuracy, -c.flops))
        assert all(best.skipped < c.skipped for c in by_size[k + 1])
    wider = search(evaluate, units, cost, SearchConfig(beam_width=3, exhaustive_limit=0))
    assert len(wider) > len(greedy)
    best_wide = max((c for c in wider if len(c.skipped) == 4), key=lambda c: c.accuracy)
    best_greedy = max((c for c in greedy if len(c.skipped) == 4), key=lambda c: c.accuracy)
    assert best_wide.accuracy >= best_greedy.accuracy
    limited = search(evaluate, units, cost, SearchConfig(beam_width=2, exhaustive_limit=0, max_skipped=2))
    assert max(len(c.skipped) for c in limited) == 2


def test_spread_keeps_the_ends_and_thins_evenly() -> None:
    front = [Candidate(frozenset({f"u{i}"} if i else set()), 1.0 - i / 20, 1000 - 10 * i) for i in range(11)]
    picked = spread(front, 4)
    assert len(picked) == 4 and picked[0].flops == 1000 and picked[-1].flops == 900
    assert spread(front, 50) == sorted(front, key=lambda c: -c.flops)
    with pytest.raises(ConfigError):
        spread(front, 0)


def test_search_config_rejects_impossible_values() -> None:
    with pytest.raises(ConfigError, match="beam_width"):
        SearchConfig(beam_width=0)
    with pytest.raises(ConfigError, match="max_skipped"):
        SearchConfig(max_skipped=-1)


# ------------------------------------------------------------------------------------- selector

def _fixtures() -> list[Path]:
    files = sorted(BUDGET_FIXTURES.glob("*.json"))
    assert len(files) >= 5, f"budget fixtures missing in {BUDGET_FIXTURES}"
    return files


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.stem)
def test_selector_agrees_with_the_shared_fixtures(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert doc["_about"] and len({e["name"] for e in doc["front"]}) == len(doc["front"])
    for case in doc["cases"]:
        choice = select_for_budget(doc["front"], case["budget_ms"])
        assert (choice.entry.name, choice.fits) == (case["pick"], case["fits"]), (path.name, case)
        assert doc["front"][choice.index]["name"] == choice.entry.name
    picks = select_trace(doc["front"], [c["budget_ms"] for c in doc["cases"]])
    assert [c.entry.name for c in picks] == [c["pick"] for c in doc["cases"]]


@pytest.mark.parametrize("seed", range(300))
def test_selector_never_exceeds_the_budget_when_something_fits(seed) -> None:
    rng = random.Random(seed)
    front = [FrontEntry(f"c{i}", rng.choice([0.0, 0.5, 1.0, 2.5, 2.5, 4.0, 9.0]), rng.choice([0.1, 0.5, 0.8, 0.99]))
             for i in range(rng.randint(1, 8))]
    budget = rng.choice([-1.0, 0.0, 0.5, 2.5, 3.0, 9.0, math.inf, rng.uniform(-5, 20)])
    choice = select_for_budget(front, budget)
    fitting = [e for e in front if e.cost_ms <= budget]
    assert choice.fits == bool(fitting) and choice.missed == (not fitting)
    if fitting:
        assert choice.entry.cost_ms <= budget
        assert choice.entry.accuracy == max(e.accuracy for e in fitting)
        assert choice.entry.cost_ms == min(e.cost_ms for e in fitting if e.accuracy == choice.entry.accuracy)
    else:
        assert choice.entry.cost_ms == min(e.cost_ms for e in front)
    # the answer does not depend on the order, up to exact duplicates
    again = select_for_budget(list(reversed(front)), budget)
    assert (again.entry.cost_ms, again.entry.accuracy) == (choice.entry.cost_ms, choice.entry.accuracy)


def test_selector_rejects_bad_fronts_and_budgets() -> None:
    with pytest.raises(ConfigError, match="front is empty"):
        select_for_budget([], 1.0)
    with pytest.raises(ConfigError, match="cost_ms must be a finite number"):
        select_for_budget([{"name": "a", "cost_ms": float("nan"), "accuracy": 0.5}], 1.0)
    with pytest.raises(ConfigError, match="lacks accuracy"):
        select_for_budget([{"name": "a", "cost_ms": 1.0}], 1.0)
    with pytest.raises(ConfigError, match="budget_ms must be a number"):
        select_for_budget([{"name": "a", "cost_ms": 1.0, "accuracy": 0.5}], float("nan"))


def test_importing_the_package_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, pipeline.dynamic, pipeline.dynamic.selector; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
