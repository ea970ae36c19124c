"""The budget selector: per frame, the most accurate configuration whose cost fits the budget.

The same rule is implemented in the app's Java core (``BudgetSelector.java``); both are checked
against the shared fixtures in ``tests/fixtures/budget/*.json``. The rule, exactly:

1. A configuration *fits* when ``cost_ms <= budget_ms``.
2. Among those that fit: the highest ``accuracy``; on equal accuracy the lower ``cost_ms``; on
   equal both, the one listed first.
3. When none fits: the cheapest (lowest ``cost_ms``); on equal cost the higher ``accuracy``; on
   equal both, the one listed first. The choice says it missed (``fits`` is False).

The front may be given in any order. No torch, no numpy: the selector runs anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class FrontEntry:
    """One configuration the selector can pick."""

    name: str
    cost_ms: float
    accuracy: float
    file: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"front entry name must be a non-empty string, got {self.name!r}")
        for field_name in ("cost_ms", "accuracy"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"front entry {self.name!r}: {field_name} must be a finite number, got {value!r}")
        if self.cost_ms < 0:
            raise ConfigError(f"front entry {self.name!r}: cost_ms must be >= 0, got {self.cost_ms!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FrontEntry:
        missing = [k for k in ("name", "cost_ms", "accuracy") if k not in data]
        if missing:
            raise ConfigError(f"front entry {dict(data)!r} lacks {', '.join(missing)}",
                              next_step="Each entry needs name, cost_ms and accuracy.")
        return cls(name=data["name"], cost_ms=data["cost_ms"], accuracy=data["accuracy"], file=data.get("file"))


@dataclass(frozen=True)
class Choice:
    """What the selector picked for one budget."""

    entry: FrontEntry
    index: int          # position of the entry in the front as given
    fits: bool          # False: nothing fits, the cheapest was taken (a deadline miss is expected)

    @property
    def missed(self) -> bool:
        return not self.fits


def _entries(front: Iterable[FrontEntry | Mapping[str, Any]]) -> list[FrontEntry]:
    entries = [e if isinstance(e, FrontEntry) else FrontEntry.from_mapping(e) for e in front]
    if not entries:
        raise ConfigError("the front is empty: there is no configuration to select",
                          next_step="Run `python -m pipeline.dynamic` to measure a front first.")
    return entries


def select_for_budget(front: Sequence[FrontEntry | Mapping[str, Any]], budget_ms: float) -> Choice:
    """Pick a configuration for ``budget_ms`` by the rule in the module docstring."""
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or math.isnan(budget_ms):
        raise ConfigError(f"budget_ms must be a number, got {budget_ms!r}")
    entries = _entries(front)
    best: int | None = None
    for i, e in enumerate(entries):
        if e.cost_ms > budget_ms:
            continue
        if best is None:
            best = i
            continue
        b = entries[best]
        if e.accuracy > b.accuracy or (e.accuracy == b.accuracy and e.cost_ms < b.cost_ms):
            best = i
    if best is not None:
        return Choice(entries[best], best, True)
    cheapest = 0
    for i, e in enumerate(entries[1:], start=1):
        c = entries[cheapest]
        if e.cost_ms < c.cost_ms or (e.cost_ms == c.cost_ms and e.accuracy > c.accuracy):
            cheapest = i
    return Choice(entries[cheapest], cheapest, False)


def select_trace(front: Sequence[FrontEntry | Mapping[str, Any]], budgets_ms: Iterable[float]) -> list[Choice]:
    """One choice per budget of a trace (the front is checked once)."""
    entries = _entries(front)
    return [select_for_budget(entries, b) for b in budgets_ms]
