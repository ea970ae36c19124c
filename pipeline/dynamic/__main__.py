"""`python -m pipeline.dynamic`: skip configurations of a pretrained model, measured, with their Pareto front.

Steps:

1. load the model and find its skip units (attention / MLP branch per block);
2. search: accuracy of each configuration on the evaluation data (the default model: top-1 on
   its test split; other models: top-1 agreement with the full model on a seeded batch), cost
   in FLOPs; every configuration evaluated goes to ``configurations.json``;
3. measure: the FLOPs front, thinned to ``--max-configs`` spread over its cost range (the full
   model always included), is exported (one file per configuration, format x mode, no control
   flow; palette modes carry the full model's palettes, made once with deploy's fidelity flags
   such as ``--target-bits`` and ``--assignment gptq``, for the layers each configuration keeps) and measured: accuracy of the exported file itself, host latency (onnxruntime / LiteRT,
   ``--threads``), and with ``--device`` latency and energy on that device through the JobRunner
   (``--device sim``: the simulated phone, figures labelled simulated);
4. the final front per format x mode is taken on the measured figures (accuracy up, latency
   down, energy down where measured) and written to ``pareto.json``, a table and ``pareto.png``;
   the front's bundles end in ``OUT/bundles/`` (the other measured ones in ``OUT/measured/``);
5. a budget-trace run over the front (``trace.json``): with ``--device`` the app runs it on the
   device (``JobRunner.run_trace``: every front bundle pushed, one configuration per frame picked
   by the app's selector), without one (or when the device run fails) on the host; and the job's
   ``budget_trace`` section (``budget_trace_job.json``).

Why the search uses FLOPs and not device latency: the search evaluates tens to hundreds of
configurations, and one device job costs seconds to minutes; FLOPs rank configurations of one
model the same way latency does up to noise, and the configurations that matter are then
measured for real.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.cli_support import run_cli
from pipeline.errors import ConfigError, DeviceError, OutputError
from pipeline.palette_modes import PALETTE_SETTINGS, PaletteFields, add_palette_arguments

MODES = ("dense", "palette", "palette-int8")
FORMATS = ("onnx", "tflite")


def _csv(value: Any, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise ConfigError(f"{name}: {', '.join(bad) or 'nothing given'} is not allowed; use a comma-separated "
                          f"list of {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class DynamicConfig(PaletteFields):
    """Settings of one `python -m pipeline.dynamic` run (validated when built, saved beside the results);
    the palette modes' fidelity settings (`PaletteFields`) mean what they mean in ``pipeline.deploy``."""

    model: str = "default"
    device: str | None = None
    out: str = "out/dynamic"
    modes: tuple[str, ...] = ("dense",)
    formats: tuple[str, ...] = ("onnx",)
    max_configs: int = 6
    beam_width: int = 2
    exhaustive_limit: int = 64
    max_skipped: int | None = None
    eval_limit: int | None = None
    clusters: int = 64
    threads: int = 1
    runs: int = 20
    warmup: int = 3
    min_duration_s: float = 0.5
    cooldown_s: float = 0.5
    idle_baseline_s: float = 1.0
    job_timeout_s: float = 300.0
    sim_profile: str = "pixel-8"
    trace: str | None = None
    trace_frames: int = 120
    allow_pickle: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", _csv(self.modes, "modes", MODES))
        object.__setattr__(self, "formats", _csv(self.formats, "formats", FORMATS))
        checks = [
            (bool(self.model), "model", "a model source such as default or timm:NAME"),
            (isinstance(self.max_configs, int) and self.max_configs >= 1, "max_configs", "an integer >= 1"),
            (isinstance(self.beam_width, int) and self.beam_width >= 1, "beam_width", "an integer >= 1"),
            (isinstance(self.exhaustive_limit, int) and self.exhaustive_limit >= 0, "exhaustive_limit",
             "an integer >= 0"),
            (self.max_skipped is None or self.max_skipped >= 1, "max_skipped", "an integer >= 1"),
            (self.eval_limit is None or self.eval_limit >= 1, "eval_limit", "an integer >= 1"),
            (isinstance(self.clusters, int) and 2 <= self.clusters <= 256, "clusters", "an integer 2-256"),
            (isinstance(self.threads, int) and 1 <= self.threads <= 64, "threads", "an integer 1-64"),
            (isinstance(self.runs, int) and self.runs >= 1, "runs", "an integer >= 1"),
            (isinstance(self.warmup, int) and self.warmup >= 0, "warmup", "an integer >= 0"),
            (self.min_duration_s >= 0, "min_duration_s", "seconds >= 0"),
            (self.cooldown_s >= 0, "cooldown_s", "seconds >= 0"),
            (self.idle_baseline_s >= 0, "idle_baseline_s", "seconds >= 0"),
            (self.job_timeout_s > 0, "job_timeout_s", "seconds > 0"),
            (isinstance(self.trace_frames, int) and self.trace_frames >= 0, "trace_frames", "an integer >= 0"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise ConfigError(f"dynamic setting {name}={getattr(self, name)!r} is not allowed; use {allowed}")
        try:
            self.palette_settings()
        except ConfigError as err:
            raise ConfigError(f"dynamic settings: {err.message}", next_step=err.next_step) from None

    def palette_settings(self):
        """The `DeployConfig` whose palette settings (`PALETTE_SETTINGS`) are this run's."""
        from pipeline.deploy_config import DeployConfig

        return DeployConfig(model=self.model, modes=self.modes, formats=self.formats,
                            **{name: getattr(self, name) for name in PALETTE_SETTINGS})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modes"], d["formats"] = list(self.modes), list(self.formats)
        return d


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.dynamic",
        description="Find which attention / MLP branches of a pretrained model can be skipped without "
        "retraining, measure the configurations, keep the accuracy-vs-latency Pareto front and export "
        "one bundle per front configuration.",
    )
    p.add_argument("--model", default="default", help="model source: default, timm:NAME[:random], a .pt/.pt2 file")
    p.add_argument("--device", default=None,
                   help="measure latency/energy there: sim (the simulated phone), pixel, generic, a serial or "
                        "HOST:PORT; without it: FLOPs and host latency only")
    p.add_argument("--out", default="out/dynamic", help="output folder")
    p.add_argument("--modes", default="dense", help="comma-separated: dense,palette,palette-int8")
    p.add_argument("--formats", default="onnx", help="comma-separated: onnx,tflite")
    p.add_argument("--max-configs", dest="max_configs", type=int, default=6,
                   help="configurations to export and measure (spread over the FLOPs front; default 6)")
    p.add_argument("--beam-width", dest="beam_width", type=int, default=2, help="beam width (1 = greedy)")
    p.add_argument("--exhaustive-limit", dest="exhaustive_limit", type=int, default=64,
                   help="try every configuration when there are at most this many (default 64)")
    p.add_argument("--max-skipped", dest="max_skipped", type=int, default=None,
                   help="skip at most this many units in one configuration")
    p.add_argument("--eval-limit", dest="eval_limit", type=int, default=None,
                   help="evaluate on at most this many images (default: the whole test split / 64 seeded inputs)")
    add_palette_arguments(p)
    p.add_argument("--threads", type=int, default=1, help="inference threads (host and device)")
    p.add_argument("--runs", type=int, default=20, help="measured runs per configuration")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs per configuration")
    p.add_argument("--min-duration-s", dest="min_duration_s", type=float, default=0.5)
    p.add_argument("--cooldown-s", dest="cooldown_s", type=float, default=0.5, help="pause between device jobs")
    p.add_argument("--idle-baseline-s", dest="idle_baseline_s", type=float, default=1.0,
                   help="idle power baseline before each device job (energy is net of it)")
    p.add_argument("--job-timeout-s", dest="job_timeout_s", type=float, default=300.0)
    p.add_argument("--sim-profile", dest="sim_profile", default="pixel-8", help="profile of the simulated phone")
    p.add_argument("--trace", default=None, help="JSON budget trace (list of ms, or {budgets_ms: [...]}) for the "
                   "host trace run; default: a synthetic one over the front's latency range")
    p.add_argument("--trace-frames", dest="trace_frames", type=int, default=120,
                   help="frames of the synthetic trace (0: no trace run)")
    p.add_argument("--allow-pickle", dest="allow_pickle", action="store_true")
    return p


# ----------------------------------------------------------------------------------------- helpers

def _write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"cannot write to the output folder {out} ({err.strerror or err})",
                          next_step="Pick a writable --out folder.", path=str(out)) from None


def _evaluation_data(loaded: Any, cfg: DynamicConfig):
    """(x, y or None, description) for accuracy: labelled test split for the default model."""
    import numpy as np

    if cfg.model == "default":
        from pipeline.data import load_default_dataset

        x, y = load_default_dataset("test")
        if cfg.eval_limit:
            x, y = x[: cfg.eval_limit], y[: cfg.eval_limit]
        return x, y, f"top-1 accuracy on the default test split ({len(x)} images)"
    n = cfg.eval_limit or 64
    x = loaded.example_input(batch=n, seed=0).detach().cpu().numpy().astype(np.float32)
    return x, None, f"top-1 agreement with the full model on {n} seeded random inputs (no labelled data)"


def _file_predictions(path: Path, x, threads: int):
    import numpy as np

    from converters.runtimes import runner_for

    run = runner_for(path, threads=threads)
    out = [run(x[i : i + 64])[0] for i in range(0, len(x), 64)]
    return np.concatenate(out).reshape(len(x), -1).argmax(axis=1)


def _candidate_doc(c: Any, full: Any, units_by_name: dict) -> dict[str, Any]:
    return {
        "config": c.key,
        "skipped": sorted(c.skipped),
        "skipped_kinds": {k: sum(units_by_name[n].kind == k for n in c.skipped) for k in ("attn", "mlp")},
        "accuracy": c.accuracy,
        "accuracy_delta": c.accuracy - full.accuracy,
        "flops": c.flops,
        "flops_rel": c.flops / full.flops if full.flops else None,
    }


def _entry(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("config", "skipped", "format", "mode", "accuracy", "accuracy_delta", "latency_ms", "latency_p90_ms",
            "latency_rel", "energy_mj", "energy_rel", "flops", "flops_rel", "bytes", "host_latency_ms", "bundle")
    return {k: r.get(k) for k in keys}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


# ------------------------------------------------------------------------------------ device side

class _DeviceSession:
    """The device, connected and prepared once, through the deploy command's own wiring."""

    def __init__(self, cfg: DynamicConfig, out: Path, stack: ExitStack, log) -> None:
        from device_runner.runner import APP_PACKAGE, JobRunner, RunSettings
        from pipeline.deploy import connect_device
        from pipeline.deploy_config import DeployConfig

        dcfg = DeployConfig(device=cfg.device, model=cfg.model, out=str(out), sim_profile=cfg.sim_profile,
                            threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup,
                            min_duration_s=cfg.min_duration_s, cooldown_s=cfg.cooldown_s,
                            job_timeout_s=cfg.job_timeout_s)
        device, _phone = connect_device(dcfg, stack, out, log)
        if not device.is_installed(APP_PACKAGE):
            raise DeviceError(f"the benchmark app {APP_PACKAGE} is not installed on {device.serial}",
                              next_step="Install it (android_app/README.md), e.g. with `python -m pipeline.deploy "
                                        "--apk app-debug.apk`, then run again.")
        profile = device.profile
        has_rails = device.power_rails() is not None
        self.energy_method = profile.energy_method(has_rails=has_rails).value
        self.simulated = bool(profile.simulated)
        settings = RunSettings(threads=cfg.threads, warmup_runs=cfg.warmup, measured_runs=cfg.runs,
                               min_duration_s=cfg.min_duration_s, cooldown_s=cfg.cooldown_s,
                               idle_baseline_s=cfg.idle_baseline_s, job_timeout_s=cfg.job_timeout_s,
                               run_set=f"dynamic-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}")
        self.runner = JobRunner(device, settings, energy_method=self.energy_method, simulated=self.simulated,
                                log=log)
        self.warnings = self.runner.prepare().warnings
        self.device = device
        self.label = (f"{cfg.device}" + (f" ({cfg.sim_profile}, simulated)" if self.simulated else ""))

    def measure(self, exported: Any, runs_dir: Path) -> dict[str, Any]:
        from device_runner.runner import Bundle

        run_id = (f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-dyn-{exported.path.name}-"
                  f"{uuid.uuid4().hex[:6]}")
        try:
            doc = self.runner.run_bundle(Bundle(exported.path, exported.manifest), run_id, out_dir=runs_dir)
        except DeviceError as err:          # one failed job: keep what the others measure
            return {"status": "failed", "run_id": run_id, "latency_ms": None, "latency_p90_ms": None,
                    "energy_mj": None, "energy_method": None, "runtime": None, "error": str(err)}
        doc.setdefault("host", {})
        doc["host"] = dict(doc["host"] or {}, dynamic={"skipped": sorted(exported.skipped), "config": exported.key})
        _write_json_atomic(runs_dir / f"{run_id}.json", doc)
        lat = doc.get("latency") or {}
        host = doc.get("host") or {}
        odpm = host.get("energy_odpm") or {}
        energy = doc.get("energy") or {}
        mj = odpm.get("per_inference_mj") if odpm.get("per_inference_mj") is not None else energy.get(
            "per_inference_mj")
        return {"status": doc.get("status"), "run_id": run_id, "latency_ms": lat.get("median_ms"),
                "latency_p90_ms": lat.get("p90_ms"), "energy_mj": mj,
                "energy_method": "odpm" if odpm.get("per_inference_mj") is not None else energy.get("method"),
                "runtime": (doc.get("runtime") or {}).get("name"), "error": doc.get("error")}


# ---------------------------------------------------------------------------------------- the run

def run_dynamic(cfg: DynamicConfig, *, steps: Any = None) -> dict[str, Any]:
    """Run everything (see the module docstring); returns the pareto.json document."""
    with ExitStack() as device_stack:       # the device stays connected until the trace has run
        return _run_dynamic(cfg, device_stack, steps=steps)


def _run_dynamic(cfg: DynamicConfig, device_stack: ExitStack, *, steps: Any = None) -> dict[str, Any]:
    import numpy as np

    from converters.runtimes import host_latency_ms
    from pipeline.dynamic.export import count_control_flow, export_configs
    from pipeline.dynamic.search import Evaluator, FlopTable, SearchConfig, pareto_front, search, spread
    from pipeline.dynamic.skip import find_units
    from pipeline.dynamic.trace import TraceConfig, job_section, load_budgets, run_trace, synthetic_budgets
    from pipeline.palette_modes import palettize_modes, recorded_configs, requested_configs
    from pipeline.sources import load_model
    from pipeline.steps import Steps

    out = Path(cfg.out)
    _prepare_out(out)
    palette_modes = [m for m in cfg.modes if m != "dense"]
    steps = steps or Steps(total=(7 if cfg.device else 6) + bool(palette_modes))
    _write_json_atomic(out / "dynamic_config.json", cfg.to_dict())

    with steps.step("load the model and find skip units"):
        loaded = load_model(cfg.model, allow_pickle=cfg.allow_pickle)
        module = loaded.module.eval()
        units = find_units(module)
        units_by_name = {u.name: u for u in units}
        example = loaded.example_input(batch=1, seed=0)
        x_eval, y_eval, metric_text = _evaluation_data(loaded, cfg)
        steps.log(f"{len(units)} skip units in {len(units) // 2} blocks; accuracy = {metric_text}")
        if loaded.metadata.get("untrained"):
            steps.log("warning: the model is untrained (random weights): accuracy figures are meaningless")

    evaluator = Evaluator(module, units, x_eval, y_eval)
    cost = FlopTable(module, units, example)

    search_cfg = SearchConfig(beam_width=cfg.beam_width, exhaustive_limit=cfg.exhaustive_limit,
                              max_skipped=cfg.max_skipped)
    n = len(units)
    expected = 2 ** n if 2 ** n <= cfg.exhaustive_limit else 1 + cfg.beam_width * n * (n + 1) // 2
    with steps.step("search configurations (accuracy x FLOPs)", total=min(expected, search_cfg.max_evals)) as adv:
        candidates = search(evaluator, units, cost, search_cfg, progress=adv)
    full = next(c for c in candidates if not c.skipped)
    sens = {u.name: full.accuracy - evaluator(frozenset({u.name})) for u in units}
    flops_front = pareto_front(candidates, {"accuracy": "max", "flops": "min"}, get=lambda c: vars(c))
    chosen = spread(flops_front, cfg.max_configs)
    if full not in chosen:
        chosen = [full, *chosen[: max(0, cfg.max_configs - 1)]]
    configurations = {
        "schema_version": 1, "model": cfg.model, "model_name": loaded.name,
        "accuracy_metric": evaluator.metric, "accuracy_data": metric_text,
        "untrained_model": bool(loaded.metadata.get("untrained")),
        "search": {"method": "exhaustive" if 2 ** n <= cfg.exhaustive_limit else f"beam (width {cfg.beam_width})",
                   "evaluated": len(candidates), "cost": "FLOPs (torch.utils.flop_counter, batch 1)"},
        "units": [{"name": u.name, "kind": u.kind, "block": u.block, "sensitivity": sens[u.name]} for u in units],
        "full": _candidate_doc(full, full, units_by_name),
        "configurations": [dict(_candidate_doc(c, full, units_by_name), on_flops_front=c in flops_front,
                                measured=c in chosen) for c in sorted(candidates, key=lambda c: -c.flops)],
        "measured": [],
    }
    _write_json_atomic(out / "configurations.json", configurations)

    bundles_dir = out / "bundles"
    measured_dir = out / "measured"
    for d in (bundles_dir, measured_dir):
        if d.exists():
            shutil.rmtree(d)
    palettes = applied = None
    if palette_modes:  # the full model's palettes, once; each configuration keeps its layers' ones
        settings = cfg.palette_settings()
        requested = requested_configs(settings, cfg.modes)
        with steps.step("palettize the full model", total=len(requested)) as adv:
            palettes, applied = palettize_modes(settings, loaded, requested, recorded_configs(settings, requested),
                                                list(requested), log=steps.log, advance=adv)
    per_config = len(cfg.formats) * len(cfg.modes)
    with steps.step("export the configurations to measure", total=len(chosen) * per_config) as adv:
        exported = export_configs(module, units, [c.skipped for c in chosen], example, measured_dir,
                                  formats=cfg.formats, modes=cfg.modes, clusters=cfg.clusters,
                                  source_model=cfg.model, model_name=loaded.name, progress=adv,
                                  palettes=palettes, palettize_configs=applied)
    by_key = {c.skipped: c for c in chosen}
    rows: list[dict[str, Any]] = []
    with steps.step("accuracy of each file and host latency", total=len(exported)) as adv:
        x1 = np.ascontiguousarray(example.detach().cpu().numpy(), dtype=np.float32)
        for e in exported:
            flow = count_control_flow(e.model_file)
            if any(flow.values()):
                raise OutputError(f"{e.model_file} holds control flow {flow}: phone delegates reject it",
                                  next_step="This is a bug in pipeline.dynamic.skip; please report it.")
            acc = evaluator.score_predictions(_file_predictions(e.model_file, x_eval, cfg.threads))
            host = host_latency_ms(e.model_file, x1, threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup)
            c = by_key[e.skipped]
            rows.append({
                "config": e.key, "skipped": sorted(e.skipped), "format": e.format, "mode": e.mode,
                "bundle": str(e.path), "bytes": int(e.manifest["bytes"]), "flops": c.flops,
                "accuracy_torch": c.accuracy, "accuracy": acc,
                "host_latency_ms": host["median_ms"], "host_latency_p90_ms": host["p90_ms"],
                "host_runtime": host["runtime"], "latency_ms": None, "latency_p90_ms": None, "energy_mj": None, "device": None, "_exported": e,
            })
            adv(1)

    latency_source = f"host CPU ({rows[0]['host_runtime'] if rows else 'n/a'}, {cfg.threads} thread(s), median)"
    energy_source = None
    warnings: list[str] = []
    session: _DeviceSession | None = None
    if cfg.device:
        with steps.step(f"measure on the device ({cfg.device})", total=len(rows)) as adv:
            runs_dir = out / "runs"
            runs_dir.mkdir(exist_ok=True)
            session = _DeviceSession(cfg, out, device_stack, steps.log)
            warnings.extend(session.warnings)
            for r in rows:
                m = session.measure(r["_exported"], runs_dir)
                r["device"] = {"label": session.label, **m}
                if m["status"] != "ok":
                    warnings.append(f"{r['config']} ({r['format']}/{r['mode']}): {m['status']}: {m['error']}")
                r["latency_ms"], r["energy_mj"] = m["latency_ms"], m["energy_mj"]
                r["latency_p90_ms"] = m["latency_p90_ms"]
                adv(1)
            latency_source = (f"{session.label}, threads {cfg.threads}, median of >= {cfg.runs} runs "
                              "(app-side timing)")
            energy_source = f"{session.label}: method {session.energy_method}, per inference, net of idle"
    else:
        for r in rows:
            r["latency_ms"], r["latency_p90_ms"] = r["host_latency_ms"], r["host_latency_p90_ms"]

    fronts: list[dict[str, Any]] = []
    references: list[dict[str, Any]] = []
    with steps.step("Pareto front of the measured configurations"):
        for fmt in cfg.formats:
            for mode in cfg.modes:
                group = [r for r in rows if r["format"] == fmt and r["mode"] == mode and r["latency_ms"] is not None]
                if not group:
                    continue
                ref = next((r for r in group if not r["skipped"]), None)
                objectives = {"accuracy": "max", "latency_ms": "min"}
                if all(r["energy_mj"] is not None for r in group):
                    objectives["energy_mj"] = "min"
                front = pareto_front(group, objectives)
                if ref is not None:
                    references.append(ref)
                for r in group:
                    r["on_front"] = r in front
                    r["accuracy_delta"] = r["accuracy"] - ref["accuracy"] if ref else None
                    r["latency_rel"] = _ratio(r["latency_ms"], ref["latency_ms"] if ref else None)
                    r["energy_rel"] = _ratio(r["energy_mj"], ref["energy_mj"] if ref else None)
                    r["flops_rel"] = _ratio(r["flops"], ref["flops"] if ref else None)
                fronts.extend(sorted(front, key=lambda r: r["latency_ms"]))
        for r in rows:
            e = r.pop("_exported")
            if r.get("on_front"):
                target = bundles_dir / e.path.name
                bundles_dir.mkdir(exist_ok=True)
                os.replace(e.path, target)
                r["bundle"] = str(target)
        configurations["measured"] = rows
        _write_json_atomic(out / "configurations.json", configurations)
        pareto = {
            "schema_version": 1, "model": cfg.model, "model_name": loaded.name,
            "accuracy_metric": evaluator.metric, "accuracy_data": metric_text,
            "untrained_model": bool(loaded.metadata.get("untrained")),
            "latency_source": latency_source, "energy_source": energy_source,
            "objectives": "accuracy (max), latency_ms (min), energy_mj (min, where measured), per format x mode",
            "front": [_entry(r) for r in fronts],
            "reference": [dict(_entry(r), on_front=bool(r.get("on_front"))) for r in references],
            "warnings": warnings,
        }
        _write_json_atomic(out / "pareto.json", pareto)
        _plot(out / "pareto.png", configurations, rows, pareto)

    first = [r for r in fronts if r["format"] == cfg.formats[0] and r["mode"] == cfg.modes[0]]
    if (cfg.trace_frames > 0 or cfg.trace) and not first:
        pareto["warnings"].append(f"no measured front for {cfg.formats[0]}/{cfg.modes[0]}: no budget-trace run")
        _write_json_atomic(out / "pareto.json", pareto)
    elif cfg.trace_frames > 0 or cfg.trace:
        # the full (most accurate) configuration first: the device job's model_file and golden are its
        first = sorted(first, key=lambda r: (-r["accuracy"], -(r["latency_p90_ms"] or r["latency_ms"])))
        tcfgs = [TraceConfig(r["config"], Path(r["bundle"]) / json.loads(
            (Path(r["bundle"]) / "manifest.json").read_text())["model_file"],
            float(r["latency_p90_ms"] or r["latency_ms"]), float(r["accuracy"])) for r in first]
        costs = [t.cost_ms for t in tcfgs]
        budgets = (load_budgets(cfg.trace) if cfg.trace
                   else synthetic_budgets(0.8 * min(costs), 1.15 * max(costs), cfg.trace_frames))
        trace = section = None
        if session is not None:
            with steps.step(f"budget-trace run on the device ({cfg.device})"):
                trace, section = _device_trace(session, first, tcfgs, budgets, out / "runs", steps.log)
                if trace is None:
                    pareto["warnings"].append(f"the budget trace failed on the device ({section}); "
                                              "trace.json holds a host run instead")
                    section = None
                else:
                    trace["costs_from"] = "p90 latency: " + latency_source
        if trace is None:
            with steps.step("budget-trace run on the host"):
                frames = x_eval[: min(len(x_eval), 64)]
                trace = run_trace(tcfgs, budgets, frames, threads=cfg.threads)
                trace["costs_from"] = "p90 latency: " + latency_source
                section = job_section(tcfgs, budgets)
        _write_json_atomic(out / "trace.json", trace)
        _write_json_atomic(out / "budget_trace_job.json", {"budget_trace": section})
        pareto["trace_summary"] = trace["summary"]
        _write_json_atomic(out / "pareto.json", pareto)
    return pareto


def _device_trace(session: _DeviceSession, rows: list[dict[str, Any]], tcfgs: list[Any], budgets: list[float],
                  runs_dir: Path, log) -> tuple[dict[str, Any] | None, Any]:
    """The trace run by the app on the device (JobRunner.run_trace): (trace.json document, job section).

    On failure: (None, the reason), so the caller can fall back to the host run.
    """
    from device_runner.runner import Bundle, TraceConfiguration

    runs_dir.mkdir(exist_ok=True)
    run_id = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-dyn-trace-{uuid.uuid4().hex[:6]}"
    configs = [TraceConfiguration(Bundle.open(r["bundle"]), t.name, t.cost_ms, t.accuracy)
               for r, t in zip(rows, tcfgs, strict=True)]
    try:
        doc = session.runner.run_trace(configs, budgets, run_id, out_dir=runs_dir)
    except (DeviceError, ConfigError) as err:    # a budget the job schema refuses (0 ms) is a ConfigError
        return None, str(err)
    _write_json_atomic(runs_dir / f"{run_id}.json", doc)
    bt = doc.get("budget_trace")
    if doc.get("status") != "ok" or not bt:
        return None, f"status {doc.get('status')}: {doc.get('error')}"
    job = json.loads((runs_dir / f"job-{run_id}.json").read_text(encoding="utf-8"))
    energy = doc.get("energy") or {}
    runtime = doc.get("runtime") or {}
    frames = len(budgets)
    summary = {
        "frames": bt["frames"], "deadline_misses": bt["deadline_misses"],
        "deadline_miss_rate": bt["deadline_misses"] / bt["frames"], "nothing_fit": bt["nothing_fit"],
        "switches": bt["switches"], "mean_accuracy": bt["mean_accuracy"], "latency_mean_ms": bt["latency_mean_ms"],
        "latency_p90_ms": bt["latency_p90_ms"], "energy_total_mj": energy.get("total_mj"),
        "energy_per_frame_mj": energy.get("per_inference_mj"), "frames_per_config": bt["frames_per_config"],
        "where": {"device": session.label, "runtime": runtime.get("name"), "threads": runtime.get("threads"),
                  "simulated": session.simulated, "run_id": run_id,
                  "energy": f"method {energy.get('method')} over the whole trace window; energy_per_frame_mj is "
                            "net of the idle baseline"},
    }
    records = [{"frame": i, "budget_ms": f["budget_ms"], "config": f["config"], "latency_ms": f["latency_ms"],
                "deadline_missed": f["missed"]} for i, f in enumerate(bt["per_frame"])]
    log(f"device trace {run_id}: {bt['frames']} frames (of {frames} budgets), {bt['deadline_misses']} misses")
    return {"summary": summary, "frames": records, "result_file": str(runs_dir / f"{run_id}.json")}, \
        job["budget_trace"]


def _plot(path: Path, configurations: dict, rows: list[dict], pareto: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    cands = configurations["configurations"]
    ax1.scatter([c["flops"] / 1e6 for c in cands], [c["accuracy"] for c in cands], s=12, c="0.6", label="evaluated")
    fr = [c for c in cands if c["on_flops_front"]]
    fr.sort(key=lambda c: c["flops"])
    ax1.plot([c["flops"] / 1e6 for c in fr], [c["accuracy"] for c in fr], "o-", c="tab:blue", label="FLOPs front")
    ax1.set_xlabel("MFLOPs per inference")
    ax1.set_ylabel(configurations["accuracy_metric"])
    ax1.set_title("search (PyTorch)")
    ax1.legend(fontsize=8)
    groups = sorted({(r["format"], r["mode"]) for r in rows})
    for fmt, mode in groups:
        g = [r for r in rows if (r["format"], r["mode"]) == (fmt, mode) and r["latency_ms"] is not None]
        ax2.scatter([r["latency_ms"] for r in g], [r["accuracy"] for r in g], s=14, c="0.6")
        f = sorted((r for r in g if r.get("on_front")), key=lambda r: r["latency_ms"])
        ax2.plot([r["latency_ms"] for r in f], [r["accuracy"] for r in f], "o-", label=f"{fmt}/{mode} front")
    ax2.set_xlabel("latency ms, " + pareto["latency_source"].split(",")[0])
    ax2.set_ylabel(configurations["accuracy_metric"])
    ax2.set_title("measured")
    ax2.legend(fontsize=8)
    fig.suptitle(f"dynamic execution: {pareto['model_name']}", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def print_table(pareto: dict, stream=None) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    table = Table(title=f"Pareto front: {pareto['model_name']} ({pareto['accuracy_metric']})",
                  caption=f"latency: {pareto['latency_source']}; energy: {pareto['energy_source'] or 'not measured'}")
    for col in ("format/mode", "skipped", "accuracy", "Δacc", "latency ms", "rel", "energy mJ", "rel", "FLOPs rel"):
        table.add_column(col)
    shown = {(r["format"], r["mode"], r["config"]) for r in pareto["front"]}
    extra = [dict(r, _ref=True) for r in pareto.get("reference", [])
             if (r["format"], r["mode"], r["config"]) not in shown]
    for r in sorted([*pareto["front"], *extra], key=lambda r: (r["format"], r["mode"], r["latency_ms"])):
        skipped = ", ".join(r["skipped"]) or ("(full model, not on the front)" if r.get("_ref") else "(full model)")
        table.add_row(f"{r['format']}/{r['mode']}", skipped, fmt(r["accuracy"], ".4f"),
                      fmt(r["accuracy_delta"], "+.4f"), fmt(r["latency_ms"], ".3f"), fmt(r["latency_rel"], ".2f"),
                      fmt(r["energy_mj"], ".3f"), fmt(r["energy_rel"], ".2f"), fmt(r["flops_rel"], ".2f"),
                      style="dim" if r.get("_ref") else None)
    Console(file=stream or sys.stdout, width=160).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(list(argv) if argv is not None else None))
    cfg = DynamicConfig(**args)
    pareto = run_dynamic(cfg)
    print_table(pareto)
    out = Path(cfg.out)
    print(f"\nconfigurations: {out / 'configurations.json'}\nfront: {out / 'pareto.json'} "
          f"(plot {out / 'pareto.png'}, bundles in {out / 'bundles'})")
    if pareto.get("trace_summary"):
        s = pareto["trace_summary"]
        print(f"trace: {s['frames']} frames, {s['deadline_misses']} deadline misses, mean accuracy "
              f"{s['mean_accuracy']:.4f}, {s['switches']} switches ({out / 'trace.json'})")
    for w in pareto.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
