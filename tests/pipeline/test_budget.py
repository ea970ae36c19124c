"""Per-layer cluster budgets: the target is met (codebooks included) and sensitivity steers clusters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.palettize import PalettizeConfig, bits_per_weight, palettize
from pipeline.palettize.budget import (
    Budget,
    BudgetConfig,
    Option,
    allocate,
    plan_budget,
    weighted_kmeans_error,
)
from pipeline.palettize.kmeans1d import kmeans_1d

#: a smaller candidate set keeps these tests fast (the defaults go up to 256 clusters)
SMALL = {"clusters": (4, 8, 16, 32, 64, 128), "group_sizes": (None, 8)}


def _layers(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a.weight": rng.normal(0, 0.05, (32, 96)).astype(np.float32),
        "b.weight": rng.standard_t(3, (64, 48)).astype(np.float32) * 0.02,
        "c.weight": (rng.normal(0, 1, (32, 64)) * rng.uniform(0.1, 2.0, (32, 1))).astype(np.float32),
    }


def test_option_bits_count_codebooks() -> None:
    shape = (64, 96)
    assert Option(64).bits(shape) == 64 * 96 * 6 + 32 * 64
    assert Option(16, 8).bits(shape) == 64 * 96 * 4 + 32 * 16 * 8
    assert Option(16, 8).bits(shape, int8_grid=True) == 64 * 96 * 4 + 8 * 16 * 8 + 32 * 64
    assert Option(5).bits(shape) == 64 * 96 * 3 + 32 * 5  # indices are packed to ceil(log2 k) bits


@pytest.mark.parametrize("target", [3.0, 6.25])
def test_budget_meets_target_exactly_or_under(target: float) -> None:
    layers = _layers()
    budget = plan_budget(layers, None, BudgetConfig(target_bits=target, **SMALL))
    assert budget.bits_per_weight <= target + 1e-12
    assert budget.bits_per_weight > min(target, 7.0) - 1.0  # and spends most of it
    config = budget.apply_to(PalettizeConfig(algorithm="lloyd", weight_threshold=0))
    model = _as_model(layers)
    result = palettize(model, config)
    measured = bits_per_weight(result.palettes)  # the palettizer's own accounting agrees
    assert measured == pytest.approx(budget.bits_per_weight, rel=1e-12)
    for name, pal in result.palettes.items():
        opt = budget.choices[name].option
        assert pal.k <= opt.clusters and pal.group_size == opt.group_size


def test_more_bits_never_hurt() -> None:
    layers = _layers(1)
    errs = [sum(c.error for c in plan_budget(layers, None, BudgetConfig(target_bits=t, **SMALL)).choices.values())
            for t in (3, 5, 7)]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(errs, errs[1:], strict=False))


def test_sensitive_layer_gets_more_clusters() -> None:
    rng = np.random.default_rng(2)
    layers = {f"l{i}.weight": rng.normal(0, 1, (16, 64)).astype(np.float32) for i in range(4)}
    flat = {n: np.ones_like(w) for n, w in layers.items()}
    even = plan_budget(layers, flat, BudgetConfig(target_bits=5, clusters=(8, 16, 32, 64), group_sizes=(None,)), comparable=True)
    sens = dict(flat)
    sens["l2.weight"] = np.full_like(layers["l2.weight"], 1000.0)
    skewed = plan_budget(layers, sens, BudgetConfig(target_bits=5, clusters=(8, 16, 32, 64), group_sizes=(None,)), comparable=True)
    ks_even = {n: c.option.clusters for n, c in even.choices.items()}
    ks = {n: c.option.clusters for n, c in skewed.choices.items()}
    assert ks["l2.weight"] > ks_even["l2.weight"]
    assert ks["l2.weight"] > max(k for n, k in ks.items() if n != "l2.weight")
    assert skewed.bits_per_weight <= 5


def test_target_below_cheapest_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="below the cheapest"):
        plan_budget(_layers(), None, BudgetConfig(target_bits=1.5, clusters=(4, 8)))


@pytest.mark.parametrize("bad", [{"target_bits": 0}, {"target_bits": "6"}, {"clusters": (1, 4)},
                                 {"clusters": ()}, {"group_sizes": (0,)}])
def test_budget_config_rejects(bad: dict) -> None:
    with pytest.raises(ConfigError):
        BudgetConfig(**bad)


def test_error_estimate_close_to_exact_kmeans() -> None:
    w = _layers()["b.weight"]
    for k in (8, 32):
        exact = kmeans_1d(w.ravel(), k).sse
        est = weighted_kmeans_error(w, None, k, None)
        assert exact * (1 - 1e-6) <= est <= exact * 1.25


def test_allocate_hull_choice_is_optimal_on_small_case() -> None:
    """Two layers, three options each: the greedy pick equals brute force."""
    shapes = {"x": (10, 10), "y": (10, 10)}
    ox = {Option(4): 10.0, Option(16): 2.0, Option(64): 0.1}
    oy = {Option(4): 3.0, Option(16): 2.5, Option(64): 2.4}
    best = min(((a, b) for a in ox for b in oy
                if (a.bits((10, 10)) + b.bits((10, 10))) <= 5 * 200), key=lambda ab: ox[ab[0]] + oy[ab[1]])
    got = allocate({"x": ox, "y": oy}, shapes, 5.0)
    assert (got["x"].option, got["y"].option) == best


def test_budget_overrides_round_trip() -> None:
    budget = plan_budget(_layers(), None, BudgetConfig(target_bits=5, **SMALL))
    assert isinstance(budget, Budget)
    config = budget.apply_to(PalettizeConfig(overrides={"^b\\.": None}))
    assert config.resolve("b.weight") is None  # the caller's "leave dense" keeps priority
    res = config.resolve("a.weight")
    assert res.clusters == budget.choices["a.weight"].option.clusters
    assert math.isfinite(budget.to_dict()["bits_per_weight"])


def _as_model(layers: dict[str, np.ndarray]) -> torch.nn.Module:
    model = torch.nn.Module()
    for name, w in layers.items():
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
        model.add_module(name.split(".")[0], lin)
    return model
