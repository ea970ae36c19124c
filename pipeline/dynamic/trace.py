"""A budget-trace run on the host: per frame, pick a configuration for the frame's budget and run it.

This is what the phone app does when a job carries a ``budget_trace`` (see :func:`job_section`
for the section the app would read): every front file is loaded once, then for each frame the
selector (:mod:`pipeline.dynamic.selector`, the same rule as ``BudgetSelector.java``) picks the
most accurate configuration whose cost fits the frame's budget, the file runs on the frame's
input, and the frame's latency is compared with its budget.

Latency is wall-clock time of the host runtime (onnxruntime or LiteRT, ``threads`` threads), so
the figures are host figures, not phone figures. Energy comes from the simulated phone's
battery model (``device_runner.sim.battery``: idle power over the wall time plus CPU-seconds x
per-core power, the stated model of the simulated phone), labelled ``simulated``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dynamic.selector import FrontEntry, select_for_budget
from pipeline.errors import ConfigError, DataError


@dataclass(frozen=True)
class TraceConfig:
    """One configuration a trace can switch to."""

    name: str
    file: Path
    cost_ms: float
    accuracy: float

    def entry(self) -> FrontEntry:
        return FrontEntry(self.name, self.cost_ms, self.accuracy, str(self.file))


def load_budgets(path: Path | str) -> list[float]:
    """Budgets from a JSON file: a list of milliseconds, or an object with ``budgets_ms``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"budget trace {p} does not exist", next_step="Check the --trace path.") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"budget trace {p} is not readable JSON ({err})",
                          next_step="Give a JSON list of per-frame budgets in ms, or {\"budgets_ms\": [...]}.") from None
    budgets = doc.get("budgets_ms") if isinstance(doc, dict) else doc
    return check_budgets(budgets, where=str(p))


def check_budgets(budgets: Any, where: str = "budget trace") -> list[float]:
    if not isinstance(budgets, list) or not budgets:
        raise ConfigError(f"{where}: budgets_ms must be a non-empty list of milliseconds")
    out = []
    for i, b in enumerate(budgets):
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
            raise ConfigError(f"{where}: budget {i} is {b!r}; each budget must be a finite number of ms >= 0")
        out.append(float(b))
    return out


def synthetic_budgets(low_ms: float, high_ms: float, frames: int = 120, seed: int = 0) -> list[float]:
    """A seeded budget trace swinging between ``low_ms`` and ``high_ms`` (a slow wave plus jitter)."""
    if frames < 1 or not high_ms >= low_ms >= 0:
        raise ConfigError(f"synthetic trace needs frames >= 1 and 0 <= low <= high, got {frames}, {low_ms}, {high_ms}")
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * t / max(frames / 2.0, 1.0))
    jitter = rng.uniform(-0.15, 0.15, frames)
    level = np.clip(wave + jitter, 0.0, 1.0)
    return [float(low_ms + (high_ms - low_ms) * v) for v in level]


def _battery(profile: str):
    from device_runner.sim.battery import BatteryModel
    from device_runner.sim.profiles import load_profile

    return BatteryModel(load_profile(profile).battery)


def run_trace(
    configs: Sequence[TraceConfig],
    budgets_ms: Sequence[float],
    frames: np.ndarray,
    *,
    threads: int = 1,
    warmup: int = 2,
    energy_profile: str | None = "pixel-8",
) -> dict[str, Any]:
    """Run the trace; returns a summary and one record per frame (see the module docstring).

    ``frames`` is a batch of inputs (batch axis first, batch 1 per frame); frame ``i`` uses input
    ``i % len(frames)``.
    """
    from converters.runtimes import runner_for

    if not configs:
        raise ConfigError("a budget trace needs at least one configuration")
    budgets = check_budgets(list(budgets_ms))
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    if frames.ndim < 2 or len(frames) == 0:
        raise DataError(f"trace frames must be a non-empty batch, got shape {frames.shape}")
    front = [c.entry() for c in configs]
    runners = [runner_for(c.file, threads=threads) for c in configs]
    for run in runners:                      # load + warm every file before the trace starts
        for _ in range(max(0, warmup)):
            run(frames[:1])
    battery = _battery(energy_profile) if energy_profile else None
    core_power_w = battery.config.core_power_w if battery else None
    idle_power_w = battery.config.idle_power_w if battery else None

    records = []
    previous = None
    for i, budget in enumerate(budgets):
        choice = select_for_budget(front, budget)
        x = frames[i % len(frames)][None]
        cpu0, t0 = time.process_time(), time.perf_counter()
        runners[choice.index](x)
        wall_s = time.perf_counter() - t0
        cpu_s = min(max(time.process_time() - cpu0, 0.0), wall_s * threads)
        latency_ms = wall_s * 1000.0
        energy_mj = None
        if battery is not None:
            battery.add_cpu_work(cpu_s, wall_s)
            energy_mj = (cpu_s * core_power_w + wall_s * idle_power_w) * 1000.0
        records.append({
            "frame": i, "budget_ms": budget, "config": choice.entry.name, "fits": choice.fits,
            "expected_ms": choice.entry.cost_ms, "latency_ms": latency_ms,
            "deadline_missed": latency_ms > budget, "accuracy": choice.entry.accuracy,
            "energy_mj": energy_mj, "switched": previous is not None and previous != choice.index,
        })
        previous = choice.index

    lat = [r["latency_ms"] for r in records]
    ordered = sorted(lat)
    energy = [r["energy_mj"] for r in records if r["energy_mj"] is not None]
    counts: dict[str, int] = {}
    for r in records:
        counts[r["config"]] = counts.get(r["config"], 0) + 1
    summary = {
        "frames": len(records),
        "deadline_misses": sum(r["deadline_missed"] for r in records),
        "deadline_miss_rate": sum(r["deadline_missed"] for r in records) / len(records),
        "nothing_fit": sum(not r["fits"] for r in records),
        "switches": sum(r["switched"] for r in records),
        "mean_accuracy": statistics.fmean(r["accuracy"] for r in records),
        "latency_mean_ms": statistics.fmean(lat),
        "latency_p90_ms": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "energy_total_mj": sum(energy) if energy else None,
        "energy_per_frame_mj": statistics.fmean(energy) if energy else None,
        "frames_per_config": counts,
        "where": {"device": "host-cpu", "runtime": _runtime_name(configs), "threads": threads,
                  "simulated": True,
                  "energy": f"simulated battery model of profile {energy_profile} (idle power x wall time "
                            "+ CPU time x per-core power)" if energy_profile else None},
    }
    return {"summary": summary, "frames": records}


def _runtime_name(configs: Sequence[TraceConfig]) -> str:
    suffixes = {Path(c.file).suffix for c in configs}
    names = sorted({"onnxruntime" if s == ".onnx" else "litert" for s in suffixes})
    return "+".join(names)


def job_section(configs: Sequence[TraceConfig], budgets_ms: Sequence[float], remote_dirs: dict[str, str] | None = None,
                sha256: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``budget_trace`` section a job would carry for the phone app (a proposal for the schema).

    ``remote_dirs`` maps a configuration name to the folder its file was pushed to on the device;
    without it the host paths are written.
    """
    entries = []
    for c in configs:
        file = f"{remote_dirs[c.name]}/{Path(c.file).name}" if remote_dirs and c.name in remote_dirs else str(c.file)
        entry = {"name": c.name, "file": file, "cost_ms": c.cost_ms, "accuracy": c.accuracy}
        if sha256 and c.name in sha256:
            entry["sha256"] = sha256[c.name]
        entries.append(entry)
    return {"configurations": entries, "budgets_ms": check_budgets(list(budgets_ms)),
            "selector": "most accurate with cost_ms <= budget_ms; ties: lower cost, then first listed; "
                        "none fits: cheapest (ties: higher accuracy, then first listed), counted as a miss"}
