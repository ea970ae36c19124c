"""`python -m pipeline.deploy`: from a model to measured results on a phone, in one command.

Steps: load the model, palettize, export and verify the bundles, connect to the device, check the
benchmark app, prepare the phone, then per bundle push (sha256-checked), run the job, collect the
result and store it; finally print a table and write ``results.json`` and ``report.html``.

``--device sim`` starts a simulated phone and a local collector, runs everything against them and
stops them at the end; every figure from it is labelled simulated.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.cli_support import run_cli
from pipeline.deploy_config import DeployConfig, parse_args
from pipeline.errors import DeviceError, ResultError
from pipeline.fsutil import atomic_write_json, ensure_writable_dir
from pipeline.steps import Steps


@dataclass
class BundleInfo:
    format: str
    mode: str
    path: Path
    manifest: dict[str, Any]
    accuracy: float | None = None          # top-1 on the labelled test split (default model)
    top1_agreement: float | None = None    # with the dense PyTorch model on the evaluation batch
    reused: bool = False


@dataclass
class DeployOutcome:
    config: DeployConfig
    bundles: list[BundleInfo] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    out: Path = Path(".")

    @property
    def ok(self) -> bool:
        return not self.failures and all(r.get("status") == "ok" for r in self.results)


# ----------------------------------------------------------------------------------------- helpers

def _model_fingerprint(module: Any) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _exporter_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for dist in ("vit-palette-bench", "torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def _bundle_key(cfg: DeployConfig, fmt: str, mode: str, fingerprint: str, pal_config: dict | None) -> dict:
    """What a bundle was made from; a bundle is reused only when all of it matches."""
    return {"model": cfg.model, "weights_sha256": fingerprint, "format": fmt, "mode": mode,
            "palettize_config": pal_config, "exporters": _exporter_versions()}


def _reusable(path: Path, key: dict) -> dict | None:
    """The bundle's manifest when the bundle is intact and was made from the same request."""
    from converters.bundle import load_bundle

    key_file = path.parent / f"{path.name}.request.json"
    if not path.is_dir() or not key_file.is_file():
        return None
    try:
        if json.loads(key_file.read_text()) != key:
            return None
        return load_bundle(path).manifest
    except (ValueError, OSError, ResultError, Exception):  # noqa: BLE001 - any doubt means export again
        return None


def _evaluation_batch(loaded: Any, cfg: DeployConfig):
    """(x, labels or None) used for accuracy / top-1 agreement of every exported file."""
    import numpy as np

    if cfg.model == "default":
        from pipeline.data import load_default_dataset

        x, y = load_default_dataset("test")
        if cfg.eval_limit and cfg.eval_limit < len(y):
            # a seeded random subset: the split is ordered by class
            idx = np.sort(np.random.default_rng(0).permutation(len(y))[: cfg.eval_limit])
            x, y = x[idx], y[idx]
        return x, y
    n = min(cfg.eval_limit or 32, 64)
    x = loaded.example_input(batch=n, seed=0).detach().cpu().numpy().astype(np.float32)
    return x, None


def _file_quality(bundle_path: Path, manifest: dict, x, y, dense_top1) -> tuple[float | None, float | None]:
    import numpy as np

    from converters.runtimes import runner_for

    run = runner_for(bundle_path / manifest["model_file"], threads=2)
    logits = []
    for i in range(0, len(x), 64):
        logits.append(run(x[i : i + 64])[0])
    pred = np.concatenate(logits).reshape(len(x), -1).argmax(axis=1)
    acc = float((pred == y).mean()) if y is not None else None
    agree = float((pred == dense_top1).mean())
    return acc, agree


# ------------------------------------------------------------------------------------------ stages

def build_bundles(cfg: DeployConfig, steps: Steps, out: Path, skipped: list[str] | None = None, *,
                  palette_cache: Any = None) -> tuple[list[BundleInfo], str]:
    """Load, palettize and export (or reuse) one verified bundle per format x mode.

    A bundle whose exporter is unavailable here is named in ``skipped`` and left out.
    ``palette_cache``: a `pipeline.palette_modes.PaletteCache` shared with later exports of this run.
    """
    import torch

    from converters.bundle import export_bundle
    from converters.errors import ExportUnavailableError
    from pipeline.palette_modes import palettize_modes, recorded_configs, requested_configs
    from pipeline.sources import load_model

    with steps.step("load model"):
        loaded = load_model(cfg.model, allow_pickle=cfg.allow_pickle)
        module = loaded.module.eval()
        fingerprint = _model_fingerprint(module)
        skipped = skipped if skipped is not None else []
        example = loaded.example_input(batch=1, seed=0)

    requested = requested_configs(cfg, cfg.modes)
    pal_configs = recorded_configs(cfg, requested)

    bundles_dir = out / "bundles"
    bundles_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(f, m) for f in cfg.formats for m in ("dense", "palette", "palette-int8") if m in cfg.modes]
    keys = {job: _bundle_key(cfg, *job, fingerprint, pal_configs.get(job[1])) for job in jobs}
    reusable = {job: _reusable(bundles_dir / f"{job[0]}-{job[1]}", keys[job]) for job in jobs}

    # palettize only for modes that still need exporting (the slow step on big models)
    wanted = sorted({m for (f, m), manifest in reusable.items() if manifest is None and m != "dense"})
    with steps.step("palettize", total=max(1, len(wanted))) as advance:
        palettes, applied = palettize_modes(cfg, loaded, requested, pal_configs, wanted, log=steps.log,
                                            advance=advance, cache=palette_cache, fingerprint=fingerprint)

    x_eval, y_eval = _evaluation_batch(loaded, cfg)
    with torch.no_grad():
        dense_logits = torch.cat([module(torch.from_numpy(x_eval[i : i + 128])) for i in range(0, len(x_eval), 128)])
    dense_top1 = dense_logits.reshape(len(x_eval), -1).argmax(dim=1).numpy()

    bundles: list[BundleInfo] = []
    with steps.step("export and verify bundles", total=len(jobs)) as advance:
        dense_bytes: dict[str, int] = {}
        for fmt, mode in jobs:
            name = f"{fmt}-{mode}"
            path = bundles_dir / name
            manifest = reusable[(fmt, mode)]
            reused = manifest is not None
            if manifest is None:
                try:
                    b = export_bundle(
                        module, example, fmt, mode, palettes.get(mode), bundles_dir, name=name,
                        source_model=cfg.model, model_name=loaded.name, palettize_config=applied.get(mode),
                        dense_bytes=dense_bytes.get(fmt),
                    )
                except ExportUnavailableError as err:  # e.g. no TFLite converter here: skip that format
                    skipped.append(f"{fmt}/{mode}: {err}")
                    steps.log(f"skipped {fmt}/{mode}: {err}")
                    advance(1)
                    continue
                manifest = b.manifest
                atomic_write_json(bundles_dir / f"{name}.request.json", keys[(fmt, mode)])
            if mode == "dense":
                dense_bytes[fmt] = int(manifest["bytes"])
            acc, agree = _file_quality(path, manifest, x_eval, y_eval, dense_top1)
            bundles.append(BundleInfo(fmt, mode, path, manifest, acc, agree, reused))
            advance(1)
    return bundles, loaded.name


class ResultStorage:
    """Where results go: the collector over HTTP; a local store when it cannot be reached."""

    def __init__(self, url: str, token: str | None, fallback_db: str, log) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.fallback_db = fallback_db
        self.log = log
        self._fallback = None

    def store(self, doc: dict[str, Any]) -> str:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = httpx.post(f"{self.url}/api/v1/results", json=doc, headers=headers, timeout=30)
        except httpx.HTTPError as err:
            return self._store_locally(doc, f"collector {self.url} unreachable ({type(err).__name__})")
        if r.status_code in (200, 201):
            return "collector"
        if r.status_code == 409:
            raise ResultError(f"the collector {self.url} holds a different result with run id {doc.get('run_id')}",
                              next_step="Run ids are unique per job; this result is kept in OUT/runs/.")
        if r.status_code == 422:
            raise ResultError(f"the collector rejected result {doc.get('run_id')}: {r.text[:500]}",
                              next_step="This is a bug in the app or runner; the document is kept in OUT/runs/.")
        return self._store_locally(doc, f"collector {self.url} answered HTTP {r.status_code}")

    def _store_locally(self, doc: dict[str, Any], why: str) -> str:
        from results.store import ResultStore

        if self._fallback is None:
            self._fallback = ResultStore(self.fallback_db)
            self.log(f"warning: {why}; storing results in {self.fallback_db} instead")
        self._fallback.add(doc)
        return "local"

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()


def connect_device(cfg: DeployConfig, stack: ExitStack, out: Path, log) -> tuple[Any, Any]:
    from device_runner.device import Device
    from device_runner.profiles import get_profile, resolve_device

    if cfg.simulated:
        from device_runner.sim import SimulatedPhone

        root = out / "sim-phone"
        phone = stack.enter_context(SimulatedPhone(root=root, profile=cfg.sim_profile, port=0))
        log(f"started a simulated phone ({cfg.sim_profile}) on {phone.serial}; its figures are simulated")
        device = Device.connect(phone.serial, profile=get_profile("sim"), auth_timeout_s=cfg.auth_timeout_s)
        stack.callback(device.close)
        return device, phone
    spec = resolve_device(cfg.device, devices_file=cfg.devices_file)
    device = Device.connect(spec.address, profile=spec.profile, auth_timeout_s=cfg.auth_timeout_s)
    stack.callback(device.close)
    return device, None


def _run_id(fmt: str, mode: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{fmt}-{mode}-{uuid.uuid4().hex[:8]}"


def run_deploy(cfg: DeployConfig, *, steps: Steps | None = None) -> DeployOutcome:
    out = Path(cfg.out)
    ensure_writable_dir(out)
    steps = steps or Steps(total=7)
    outcome = DeployOutcome(config=cfg, out=out)
    atomic_write_json(out / "deploy_config.json", cfg.to_dict())

    from device_runner.runner import Bundle, JobRunner

    runs_dir = out / "runs"
    runs_dir.mkdir(exist_ok=True)
    with ExitStack() as stack:
        # find the phone first: an unreachable or unknown device fails before minutes of export
        with steps.step("find and connect to the device"):
            device, phone = connect_device(cfg, stack, out, steps.log)
            profile = device.profile
            energy_method = device.energy_method().value
            runner = JobRunner(device, cfg.run_settings(), energy_method=energy_method,
                               simulated=bool(profile.simulated), log=steps.log)
            runner.ensure_app(cfg.apk)

        skipped: list[str] = []
        bundles, _ = build_bundles(cfg, steps, out, skipped)
        outcome.bundles = bundles
        outcome.failures.extend(f"export {s}" for s in skipped)

        with steps.step("prepare the phone and the collector"):
            if cfg.collector:
                collector_url = cfg.collector
            else:
                from results.collector import start_collector_in_thread

                handle = start_collector_in_thread(f"sqlite:///{(out / 'runs.db').resolve()}")
                stack.callback(handle.stop)
                collector_url = handle.url
            storage = ResultStorage(collector_url, cfg.collector_token,
                               f"sqlite:///{(out / 'runs-local.db').resolve()}", steps.log)
            stack.callback(storage.close)
            prep = runner.prepare()
            outcome.warnings.extend(prep.warnings)

        interrupted = False
        try:
            with steps.step("run the jobs on the device", total=len(bundles)) as advance:
                for info in bundles:
                    run_id = _run_id(info.format, info.mode)
                    try:
                        doc = runner.run_bundle(Bundle(info.path, info.manifest), run_id, out_dir=runs_dir)
                    except DeviceError as err:
                        outcome.failures.append(f"{info.format}/{info.mode}: {err}")
                        steps.log(f"job {info.format}/{info.mode} failed: {err}")
                        advance(1)
                        continue
                    host = doc.setdefault("host", {}) or {}
                    doc["host"] = host
                    host.update({
                        "tool": "vit-palette-bench",
                        "accuracy_top1": info.accuracy,
                        "top1_agreement": info.top1_agreement,
                        "energy_method_planned": energy_method,
                        "threads_requested": cfg.threads,
                    })
                    atomic_write_json(runs_dir / f"{run_id}.json", doc)
                    try:
                        where = storage.store(doc)
                    except ResultError as err:  # that result only; the document stays in runs/
                        outcome.failures.append(f"{info.format}/{info.mode}: {err}")
                        steps.log(f"result of {info.format}/{info.mode} not stored: {err}")
                        advance(1)
                        continue
                    host_where = {"collector": collector_url, "local": storage.fallback_db}[where]
                    steps.log(f"stored {run_id} ({doc.get('status')}) in {host_where}")
                    outcome.results.append(doc)
                    atomic_write_json(out / "results.json", outcome.results)
                    advance(1)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if interrupted:
                runner.cleanup()
            if outcome.results:
                atomic_write_json(out / "results.json", outcome.results)

    with steps.step("write the report"):
        if outcome.results:
            from results.report import render_report

            render_report(outcome.results, out / "report.html")
        else:
            steps.log("no result was collected, so no report.html was written")
    return outcome


def print_table(outcome: DeployOutcome, stream=None) -> None:
    from pipeline.deploy_table import deploy_table

    deploy_table(outcome.results, outcome.bundles, stream=stream)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(list(argv) if argv is not None else None)
    outcome = run_deploy(cfg)
    print_table(outcome)
    print(f"\nresults: {outcome.out / 'results.json'}\nreport:  {outcome.out / 'report.html'}")
    for w in outcome.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for f in outcome.failures:
        print(f"failed: {f}", file=sys.stderr)
    bad = [r for r in outcome.results if r.get("status") != "ok"]
    if bad:
        print(f"{len(bad)} job(s) did not finish ok: " + ", ".join(f"{r['run_id']} ({r['status']})" for r in bad),
              file=sys.stderr)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
