"""Trends per configuration over nights: the figures the dashboard and the night report plot.

A *night* is a run set (the nightly pipeline names them after the UTC date). A *configuration*
is what a figure may be compared across nights for: device (model and serial), model name,
format, export mode and threads. Per configuration and night this gives the median of the ok
runs' median latency and energy per inference, the accuracy the host measured (when it did), the
model file size, how many runs there were and whether the device was simulated.

The grouping lives here rather than in ``pipeline.nightly`` because ``results`` must stay light:
it may not import the nightly pipeline (which pulls in converters and device code).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from results.figures import energy_per_inference

DEFAULT_LIMIT_NIGHTS = 30
MAX_LIMIT_NIGHTS = 366

# device model, device serial, model name, format, export mode, threads
ConfigKey = tuple[str, str | None, str | None, str | None, str | None, int | None]


@dataclass(frozen=True)
class TrendFilter:
    """Which configurations and how many of the latest nights to show; ``None`` means "any"."""

    device: str | None = None  # device model or serial
    model: str | None = None
    format: str | None = None
    mode: str | None = None
    threads: int | None = None
    limit_nights: int = DEFAULT_LIMIT_NIGHTS

    def __post_init__(self) -> None:
        if not isinstance(self.limit_nights, int) or not 1 <= self.limit_nights <= MAX_LIMIT_NIGHTS:
            raise ConfigError(f"limit_nights must be an integer from 1 to {MAX_LIMIT_NIGHTS}, "
                              f"got {self.limit_nights!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}")


def config_key(doc: dict[str, Any]) -> ConfigKey:
    device, model, runtime = doc.get("device") or {}, doc.get("model") or {}, doc.get("runtime") or {}
    return (str(device.get("model")), device.get("serial"), model.get("name"), model.get("format"),
            model.get("mode"), runtime.get("threads"))


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _numbers(docs: list[dict[str, Any]], section: str, field: str) -> list[float]:
    out = []
    for d in docs:
        value = (d.get(section) or {}).get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
    return out


def _matches(doc: dict[str, Any], flt: TrendFilter) -> bool:
    device, model, runtime = doc.get("device") or {}, doc.get("model") or {}, doc.get("runtime") or {}
    if flt.device and flt.device not in (device.get("model"), device.get("serial")):
        return False
    if flt.model and model.get("name") != flt.model:
        return False
    if flt.format and model.get("format") != flt.format:
        return False
    if flt.mode and model.get("mode") != flt.mode:
        return False
    return not (flt.threads is not None and runtime.get("threads") != flt.threads)


def night_order(docs: list[dict[str, Any]]) -> list[str]:
    """Run sets ordered by time: by their earliest started_at (ISO UTC strings sort), then name."""
    first: dict[str, str] = {}
    for d in docs:
        name = d.get("run_set")
        if not name:
            continue
        started = str(d.get("started_at") or "")
        if name not in first or started < first[name]:
            first[name] = started
    return sorted(first, key=lambda n: (first[n], n))


def _night_point(name: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [d for d in docs if d.get("status") == "ok"]
    sized = _numbers(docs, "model", "bytes")
    return {
        "run_set": name,
        "started_at": min(str(d.get("started_at") or "") for d in docs),
        "median_ms": _median(_numbers(ok, "latency", "median_ms")),
        "per_inference_mj": _median([mj for mj, _ in map(energy_per_inference, ok) if mj is not None]),
        "accuracy_top1": _median(_numbers(ok, "host", "accuracy_top1")),
        "model_bytes": int(statistics.median(sized)) if sized else None,
        "runs": len(docs),
        "ok_runs": len(ok),
        "simulated": any(bool((d.get("device") or {}).get("simulated")) for d in docs),
    }


def trends(docs: list[dict[str, Any]], flt: TrendFilter | None = None) -> dict[str, Any]:
    """Group result documents into per-configuration series over the latest nights.

    Documents without a run set are ignored. Latency and energy are medians over the night's ok
    runs of that configuration (``None`` when no ok run measured them); ``runs`` counts every
    run, ``ok_runs`` the ok ones. Returns ``{"nights": [...], "configurations": [...]}`` with
    nights oldest first and each configuration's ``nights`` in the same order (only the nights
    it ran in).
    """
    flt = flt or TrendFilter()
    nightly = [d for d in docs if d.get("run_set") and _matches(d, flt)]
    nights = night_order(nightly)[-flt.limit_nights:]
    keep = set(nights)
    rank = {name: i for i, name in enumerate(nights)}
    groups: dict[ConfigKey, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for d in nightly:
        if d["run_set"] in keep:
            groups[config_key(d)][d["run_set"]].append(d)
    configurations = []
    for key in sorted(groups, key=lambda k: tuple("" if x is None else str(x) for x in k)):
        device_model, serial, model, fmt, mode, threads = key
        points = [_night_point(name, groups[key][name]) for name in sorted(groups[key], key=rank.__getitem__)]
        configurations.append({
            "device_model": device_model, "device_serial": serial, "model": model, "format": fmt,
            "mode": mode, "threads": threads, "simulated": any(p["simulated"] for p in points),
            "nights": points,
        })
    return {"nights": nights, "configurations": configurations}


def store_trends(store: Any, flt: TrendFilter | None = None) -> dict[str, Any]:
    """:func:`trends` over the documents of a :class:`results.store.ResultStore` (filters pushed down)."""
    from results.store import RunFilter

    flt = flt or TrendFilter()
    docs = store.documents(RunFilter(device=flt.device, model=flt.model, format=flt.format, mode=flt.mode))
    return trends(docs, flt)


def trends_for_night(night_docs: list[dict[str, Any]], history: list[dict[str, Any]], night: str,
                     limit_nights: int = DEFAULT_LIMIT_NIGHTS) -> dict[str, Any]:
    """Trends of the configurations that ran in ``night``, over the nights up to and including it.

    ``history`` is every stored document to draw earlier nights from; later nights are left out so
    a report of an old night reads the same as it did that morning.
    """
    TrendFilter(limit_nights=limit_nights)  # validates
    order = night_order([*history, *night_docs])
    upto = set(order[: order.index(night) + 1]) if night in order else {night}
    keys = {config_key(d) for d in night_docs}
    seen: set[str] = set()
    picked = []
    for d in [*night_docs, *history]:
        run_id = str(d.get("run_id"))
        if run_id in seen or d.get("run_set") not in upto or config_key(d) not in keys:
            continue
        seen.add(run_id)
        picked.append(d)
    return trends(picked, TrendFilter(limit_nights=limit_nights))
