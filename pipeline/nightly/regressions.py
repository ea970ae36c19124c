"""Regressions of a night against the previous nights: pure functions over result documents.

A *series* is one configuration on one phone: (device, model, format, mode, threads, dynamic).
For each series that finished ``ok`` tonight, the previous nights' ``ok`` results of the same
series (the newest per night) are the baseline. The rule, per metric:

- **latency** (``latency.median_ms``) and **energy** (per inference, ODPM when the host measured
  it, else the app's figure; compared only between results of the same energy method):

      baseline  B     = median of the previous nights' values
      between   s_b   = 1.4826 x MAD of those values (the run-to-run spread; 0 with one night)
      within    s_w   = 1.2533 x std_ms / sqrt(runs) for tonight and the baseline nights' median
                        (the standard error of a median; latency only)
      sigma           = sqrt(s_b^2 + s_w,now^2 + s_w,prev^2)
      threshold       = B + max(k x sigma, min_change x B)      (k = 3 by default)
      regression when tonight's value > threshold, and (latency, when the documents carry
      ``samples_ms``) tonight's 10th percentile is also above the previous nights' by more than
      ``min_change``: the fast end of the distribution moved too, so the slowdown is in every
      run and not in a few runs disturbed by other work on the phone (or the host, for
      simulated phones). Within-run spreads use the samples' MAD, not their std, for the same
      reason.

  ``min_change`` (5% latency, 10% energy by default) is a floor, not the rule: with few nights the
  spread is unknown, and on a quiet phone sigma can be tiny while a change below a few percent
  is not worth a morning alert (MLPerf Mobile asks for results within 5% over repeated tries).
- **accuracy** (``host.accuracy_top1``, measured on the host from the exported file): lower than
  the baseline median by more than ``accuracy_drop`` (0.002 absolute by default).
- **file size** (``model.bytes``): bigger than the baseline median by more than ``bytes_change``
  (0 by default: the export is deterministic, any growth is a change).

No torch, no I/O: the nightly command fetches the documents and passes them here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

from pipeline.errors import ConfigError
from results.figures import energy_per_inference

SeriesKey = tuple[str, str, str, str, int, str]


@dataclass(frozen=True)
class RegressionRule:
    k_sigma: float = 3.0
    min_change_latency: float = 0.05
    min_change_energy: float = 0.10
    accuracy_drop: float = 0.002
    bytes_change: float = 0.0
    min_history: int = 1
    low_quantile: float | None = 0.1

    def __post_init__(self) -> None:
        for name in ("k_sigma", "min_change_latency", "min_change_energy", "accuracy_drop", "bytes_change"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ConfigError(f"regression rule {name}={value!r} is not allowed; use a number >= 0")
        if self.low_quantile is not None and not 0.0 <= self.low_quantile < 0.5:
            raise ConfigError(f"regression rule low_quantile={self.low_quantile!r} is not allowed; use 0-0.5 or None")
        if not isinstance(self.min_history, int) or self.min_history < 1:
            raise ConfigError(f"regression rule min_history={self.min_history!r} is not allowed; use an integer >= 1")


@dataclass(frozen=True)
class Regression:
    device: str
    model: str
    format: str
    mode: str
    threads: int
    dynamic: str
    metric: str          # latency_median_ms | energy_per_inference_mj | accuracy_top1 | model_bytes
    previous: float      # the baseline (median of previous nights)
    now: float
    threshold: float     # the value tonight had to stay under (over, for accuracy)
    nights: int          # previous nights in the baseline
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_label(doc: dict[str, Any]) -> str:
    dev = doc.get("device") or {}
    serial = dev.get("serial")
    return f"{dev.get('model') or 'unknown'} ({serial})" if serial else str(dev.get("model") or "unknown")


def dynamic_of(doc: dict[str, Any]) -> str:
    """The result's skip configuration key; "" for the full model (also for results from before
    ``host.dynamic_config`` existed, so their series go on)."""
    host = doc.get("host") or {}
    dyn = host.get("dynamic_config") or (host.get("nightly") or {}).get("dynamic") or ""
    return "" if dyn == "full" else str(dyn)


def dynamic_model_name(name: str, dynamic: str | None) -> str:
    """``NAME skip[CONFIG]`` for a skip configuration (the nightly scheduler stores results so named,
    so trends and reports grouping by model name keep configurations apart); ``NAME`` for the full model."""
    if not dynamic or dynamic == "full" or name.endswith(f" skip[{dynamic}]"):
        return name
    return f"{name} skip[{dynamic}]"


def series_key(doc: dict[str, Any]) -> SeriesKey:
    """A dynamic configuration is its own configuration: its model is named ``NAME skip[CONFIG]``."""
    model = doc.get("model") or {}
    runtime = doc.get("runtime") or {}
    dyn = dynamic_of(doc)
    name = dynamic_model_name(str(model.get("name") or "?"), dyn)
    return (device_label(doc), name, str(model.get("format") or "?"),
            str(model.get("mode") or "?"), int(runtime.get("threads") or 0), dyn)


energy_of = energy_per_inference  # one reading of the figure for table, report, trends and here


def _samples(doc: dict[str, Any]) -> list[float]:
    return [float(v) for v in ((doc.get("latency") or {}).get("samples_ms") or []) if v is not None]


def _quantile(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _median_se_ms(doc: dict[str, Any]) -> float:
    """Standard error of the run's median: 1.2533 x robust sigma / sqrt(n).

    The robust sigma is 1.4826 x MAD of the samples when the document has them (a few slow runs
    from a busy phone must not widen the threshold), else the reported ``std_ms``.
    """
    lat = doc.get("latency") or {}
    samples = _samples(doc)
    if len(samples) >= 3:
        m = median(samples)
        sigma = 1.4826 * median(abs(v - m) for v in samples)
        return 1.2533 * sigma / math.sqrt(len(samples))
    std, runs = lat.get("std_ms"), lat.get("runs")
    if std is None or not runs:
        return 0.0
    return 1.2533 * float(std) / math.sqrt(int(runs))


def _mad_sigma(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = median(values)
    return 1.4826 * median(abs(v - m) for v in values)


def _low_quantile_moved(doc: dict[str, Any], prev_docs: list[dict[str, Any]], rule: RegressionRule) -> bool:
    """Confirmation: the fast end of tonight's samples moved too, not only the middle.

    A phone busy with something else for part of a run (or a shared host, for simulated phones)
    lifts the median but leaves the fastest runs where they were; a slower model, runtime or
    phone lifts every run. True when the samples are missing (nothing to confirm with) or when
    tonight's ``low_quantile`` exceeds the previous nights' (median) by more than
    ``min_change_latency``.
    """
    if rule.low_quantile is None:
        return True
    now = _samples(doc)
    prev = [_quantile(s, rule.low_quantile) for s in map(_samples, prev_docs) if len(s) >= 3]
    if len(now) < 3 or not prev:
        return True
    return _quantile(now, rule.low_quantile) > median(prev) * (1.0 + rule.min_change_latency)


def newest_ok_per_series(docs: list[dict[str, Any]]) -> dict[SeriesKey, dict[str, Any]]:
    """The newest ``ok`` result of each series (a re-run night may hold older attempts too)."""
    out: dict[SeriesKey, dict[str, Any]] = {}
    for doc in sorted(docs, key=lambda d: str(d.get("started_at") or "")):
        if doc.get("status") == "ok":
            out[series_key(doc)] = doc
    return out


def find_regressions(current: list[dict[str, Any]], history: list[list[dict[str, Any]]],
                     rule: RegressionRule | None = None) -> list[Regression]:
    """Regressions of ``current`` (one night's documents) against ``history`` (previous nights)."""
    rule = rule or RegressionRule()
    now_by_key = newest_ok_per_series(current)
    past = [newest_ok_per_series(night) for night in history]
    found: list[Regression] = []
    for key, doc in sorted(now_by_key.items()):
        prev_docs = [night[key] for night in past if key in night]
        if len(prev_docs) < rule.min_history:
            continue

        def add(metric: str, previous: float, now: float, threshold: float, nights: int,
                key: SeriesKey = key, run_id: str = str(doc.get("run_id"))) -> None:
            found.append(Regression(*key, metric=metric, previous=previous, now=now, threshold=threshold,
                                    nights=nights, run_id=run_id))

        # latency
        now_ms = (doc.get("latency") or {}).get("median_ms")
        prev_ms = [float(d["latency"]["median_ms"]) for d in prev_docs
                   if (d.get("latency") or {}).get("median_ms") is not None]
        if now_ms is not None and len(prev_ms) >= rule.min_history:
            base = median(prev_ms)
            sigma = math.sqrt(_mad_sigma(prev_ms) ** 2 + _median_se_ms(doc) ** 2
                              + median(_median_se_ms(d) for d in prev_docs) ** 2)
            threshold = base + max(rule.k_sigma * sigma, rule.min_change_latency * base)
            if float(now_ms) > threshold and _low_quantile_moved(doc, prev_docs, rule):
                add("latency_median_ms", base, float(now_ms), threshold, len(prev_ms))

        # energy (same method only)
        now_mj, method = energy_of(doc)
        prev_mj = [v for v, m in map(energy_of, prev_docs) if v is not None and m == method]
        if now_mj is not None and len(prev_mj) >= rule.min_history:
            base = median(prev_mj)
            threshold = base + max(rule.k_sigma * _mad_sigma(prev_mj), rule.min_change_energy * abs(base))
            if now_mj > threshold:
                add("energy_per_inference_mj", base, now_mj, threshold, len(prev_mj))

        # accuracy measured on the host for the exported file
        now_acc = (doc.get("host") or {}).get("accuracy_top1")
        prev_acc = [float(d["host"]["accuracy_top1"]) for d in prev_docs
                    if (d.get("host") or {}).get("accuracy_top1") is not None]
        if now_acc is not None and prev_acc:
            base = median(prev_acc)
            threshold = base - rule.accuracy_drop
            if float(now_acc) < threshold:
                add("accuracy_top1", base, float(now_acc), threshold, len(prev_acc))

        # file size
        now_bytes = (doc.get("model") or {}).get("bytes")
        prev_bytes = [int(d["model"]["bytes"]) for d in prev_docs if (d.get("model") or {}).get("bytes") is not None]
        if now_bytes is not None and prev_bytes:
            base = median(prev_bytes)
            threshold = base * (1.0 + rule.bytes_change)
            if int(now_bytes) > threshold:
                add("model_bytes", float(base), float(now_bytes), threshold, len(prev_bytes))
    return found


def trend_rows(nights: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per series and night (oldest night first): the figures a trend chart plots."""
    rows = []
    for name, docs in nights:
        for key, doc in sorted(newest_ok_per_series(docs).items()):
            mj, method = energy_of(doc)
            rows.append({
                "night": name, "device": key[0], "model": key[1], "format": key[2], "mode": key[3],
                "threads": key[4], "dynamic": key[5], "run_id": doc.get("run_id"),
                "median_ms": (doc.get("latency") or {}).get("median_ms"),
                "std_ms": (doc.get("latency") or {}).get("std_ms"),
                "energy_per_inference_mj": mj, "energy_method": method,
                "accuracy_top1": (doc.get("host") or {}).get("accuracy_top1"),
                "model_bytes": (doc.get("model") or {}).get("bytes"),
                "simulated": bool((doc.get("device") or {}).get("simulated")),
            })
    return rows


def regressions_table(regressions: list[Regression]) -> str:
    """Plain-text table (cron mails and CI logs have no colours)."""
    head = ("device", "model", "format", "mode", "threads", "metric", "previous", "now", "threshold")
    rows = [head] + [
        (r.device, r.model, r.format, r.mode, str(r.threads), r.metric,
         f"{r.previous:.4g}", f"{r.now:.4g}", f"{r.threshold:.4g}")
        for r in regressions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
