"""Which branches to skip: sensitivity per unit, a beam search over configurations, the Pareto front.

Accuracy of a configuration comes from an :class:`Evaluator`: top-1 accuracy on labelled data
(the default model's test split), or, for models without labels here, top-1 agreement with the
full model on a seeded batch. Cost during the search is the analytic FLOP count of the
configuration (``torch.utils.flop_counter``: matmuls, linear layers, convolutions, attention
products), which is exact and cheap; measured latency and energy are added afterwards for the
configurations worth measuring (see ``pipeline/dynamic/__main__.py``), and the final front is
taken on the measured figures.

The search: every configuration when there are few units (``2**n <= exhaustive_limit``),
otherwise a beam search that starts from the full model and, level by level, adds one more
skipped unit to each kept configuration, keeping the ``beam_width`` most accurate (greedy removal
of the least harmful unit is ``beam_width=1``). Every configuration evaluated is kept, so the
front is taken over all of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.dynamic.skip import SkipUnit, apply_skips, config_key
from pipeline.errors import ConfigError

MAX = "max"
MIN = "min"


@dataclass
class Candidate:
    """One evaluated configuration."""

    skipped: frozenset[str]
    accuracy: float
    flops: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return config_key(self.skipped)


@dataclass(frozen=True)
class SearchConfig:
    """How to search (validated when built)."""

    beam_width: int = 2
    exhaustive_limit: int = 64
    max_skipped: int | None = None
    max_evals: int = 2000

    def __post_init__(self) -> None:
        if not isinstance(self.beam_width, int) or self.beam_width < 1:
            raise ConfigError(f"SearchConfig.beam_width must be an integer >= 1, got {self.beam_width!r}")
        if not isinstance(self.exhaustive_limit, int) or self.exhaustive_limit < 0:
            raise ConfigError(f"SearchConfig.exhaustive_limit must be an integer >= 0, got {self.exhaustive_limit!r}")
        if self.max_skipped is not None and (not isinstance(self.max_skipped, int) or self.max_skipped < 0):
            raise ConfigError(f"SearchConfig.max_skipped must be None or an integer >= 0, got {self.max_skipped!r}")
        if not isinstance(self.max_evals, int) or self.max_evals < 1:
            raise ConfigError(f"SearchConfig.max_evals must be an integer >= 1, got {self.max_evals!r}")


# ------------------------------------------------------------------------------------ cost: FLOPs

def count_flops(module: Any, example_input: Any) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), by torch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(example_input)
    return int(counter.get_total_flops())


class FlopTable:
    """FLOPs of any configuration from ``1 + len(units)`` counts: skipping a branch removes exactly its ops.

    Branches are independent (a skipped branch leaves every other branch's input shape alone), so the
    FLOPs of a configuration are the full model's minus the sum of the skipped units' own FLOPs; the
    tests check this against a direct count.
    """

    def __init__(self, model: Any, units: Sequence[SkipUnit], example_input: Any) -> None:
        self.full = count_flops(model, example_input)
        self.unit_flops = {u.name: self.full - count_flops(apply_skips(model, {u.name}, list(units)), example_input)
                           for u in units}

    def __call__(self, skipped: Iterable[str]) -> int:
        return self.full - sum(self.unit_flops[n] for n in skipped)


# ------------------------------------------------------------------------------------ accuracy

class Evaluator:
    """Accuracy of a configuration, cached by configuration.

    With labels ``y``: top-1 accuracy on ``x`` (metric ``"top1"``). Without: top-1 agreement with
    the full model's predictions on ``x`` (metric ``"top1_agreement"``), the honest proxy when no
    labelled data for the model is at hand.
    """

    def __init__(self, model: Any, units: Sequence[SkipUnit], x: np.ndarray, y: np.ndarray | None = None,
                 *, batch_size: int = 256) -> None:
        from pipeline.evaluate import predict_logits

        self.model = model
        self.units = list(units)
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.batch_size = batch_size
        self.metric = "top1" if y is not None else "top1_agreement"
        if y is not None:
            self.target = np.asarray(y)
            if len(self.target) != len(self.x):
                raise ConfigError(f"{len(self.x)} evaluation inputs but {len(self.target)} labels")
        else:
            self.target = predict_logits(model, self.x, batch_size).reshape(len(self.x), -1).argmax(axis=1)
        self.cache: dict[frozenset[str], float] = {}
        self.evaluations = 0

    def predictions(self, module: Any) -> np.ndarray:
        from pipeline.evaluate import predict_logits

        return predict_logits(module, self.x, self.batch_size).reshape(len(self.x), -1).argmax(axis=1)

    def score_predictions(self, pred: np.ndarray) -> float:
        return float(np.mean(np.asarray(pred) == self.target))

    def __call__(self, skipped: Iterable[str]) -> float:
        key = frozenset(skipped)
        if key not in self.cache:
            module = apply_skips(self.model, key, self.units)
            self.cache[key] = self.score_predictions(self.predictions(module))
            self.evaluations += 1
        return self.cache[key]


def sensitivity(evaluate: Callable[[frozenset[str]], float], units: Sequence[SkipUnit]) -> dict[str, float]:
    """Accuracy lost by skipping each unit alone (full accuracy minus single-skip accuracy)."""
    full = evaluate(frozenset())
    return {u.name: full - evaluate(frozenset({u.name})) for u in units}


# ------------------------------------------------------------------------------------ search

def search(
    evaluate: Callable[[frozenset[str]], float],
    units: Sequence[SkipUnit],
    cost: Callable[[frozenset[str]], int],
    config: SearchConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """Every configuration evaluated (the full model first), with accuracy and FLOPs."""
    config = config or SearchConfig()
    names = [u.name for u in units]
    limit = len(names) if config.max_skipped is None else min(config.max_skipped, len(names))
    seen: dict[frozenset[str], Candidate] = {}

    def visit(skipped: frozenset[str]) -> Candidate:
        if skipped not in seen:
            seen[skipped] = Candidate(skipped, evaluate(skipped), int(cost(skipped)))
            if progress:
                progress(1)
        return seen[skipped]

    visit(frozenset())
    if 2 ** len(names) <= config.exhaustive_limit:
        for k in range(1, limit + 1):
            for combo in itertools.combinations(names, k):
                if len(seen) >= config.max_evals:
                    return list(seen.values())
                visit(frozenset(combo))
        return list(seen.values())

    beam = [frozenset()]
    for _ in range(limit):
        children: dict[frozenset[str], Candidate] = {}
        for parent in beam:
            for name in names:
                if name in parent:
                    continue
                child = parent | {name}
                if child in children:
                    continue
                if len(seen) >= config.max_evals and child not in seen:
                    break
                children[child] = visit(child)
        if not children:
            break
        ranked = sorted(children.values(), key=lambda c: (-c.accuracy, c.flops, c.key))
        beam = [c.skipped for c in ranked[: config.beam_width]]
    return list(seen.values())


# ------------------------------------------------------------------------------------ Pareto

def dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: Mapping[str, str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for key, sense in objectives.items():
        va, vb = a[key], b[key]
        if sense == MAX:
            if va < vb:
                return False
            better |= va > vb
        else:
            if va > vb:
                return False
            better |= va < vb
    return better


def pareto_front(points: Sequence[Any], objectives: Mapping[str, str],
                 get: Callable[[Any], Mapping[str, Any]] | None = None) -> list[Any]:
    """The points no other point dominates, in their given order.

    ``objectives`` maps a key to ``"max"`` or ``"min"``; ``get`` turns a point into a mapping
    (default: the point itself, or its ``__dict__`` for objects). Points with equal objective
    values do not dominate each other, so duplicates are all kept.
    """
    bad = {k: v for k, v in objectives.items() if v not in (MAX, MIN)}
    if bad or not objectives:
        raise ConfigError(f"objectives must map keys to 'max' or 'min', got {dict(objectives)!r}")

    def view(p: Any) -> Mapping[str, Any]:
        if get is not None:
            return get(p)
        return p if isinstance(p, Mapping) else vars(p)

    views = [view(p) for p in points]
    for v in views:
        for key in objectives:
            if v.get(key) is None:
                raise ConfigError(f"a point lacks objective {key!r}: {dict(v)!r}")
    return [p for p, v in zip(points, views, strict=True)
            if not any(dominates(o, v, objectives) for o in views if o is not v)]


def spread(front: Sequence[Candidate], n: int) -> list[Candidate]:
    """Up to ``n`` configurations spread evenly over the front's cost range (full model and cheapest kept)."""
    if n < 1:
        raise ConfigError(f"the number of configurations to keep must be >= 1, got {n}")
    ordered = sorted(front, key=lambda c: (-c.flops, -c.accuracy, c.key))
    if len(ordered) <= n:
        return ordered
    if n == 1:
        return ordered[:1]
    picks = sorted({round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)})
    return [ordered[i] for i in picks]
