"""One night from end to end: export bundles once, run every missing job on the farm, find regressions.

A night is a named run set (default: the UTC date). Its results are stored by the collector as
they come, so an interrupted night keeps them; running the same night again runs only the jobs
that have no stored result with a final status (see ``history.FINAL_STATUSES``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, OutputError
from pipeline.nightly.farm import FarmConfig, Job, load_farm
from pipeline.nightly.regressions import Regression, RegressionRule, find_regressions, trend_rows

NIGHT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
EXIT_REGRESSION = 1
EXIT_JOBS_FAILED = 3


@dataclass(frozen=True)
class NightOptions:
    farm: str
    collector: str | None = None
    collector_token: str | None = None
    night: str | None = None
    out: str = "out/nightly"
    lease_db: str | None = None
    lease_ttl_s: float = 60.0
    lease_wait_s: float = 3 * 3600.0
    history: int = 7
    rule: RegressionRule = field(default_factory=RegressionRule)
    max_attempts: int = 3
    phone_failures: int = 2
    overrides: dict[str, Any] = field(default_factory=dict)   # NightSettings fields from the command line
    interactive: bool | None = None

    def __post_init__(self) -> None:
        if self.night is not None and not NIGHT_RE.match(self.night):
            raise ConfigError(f"--night {self.night!r} is not allowed; use letters, digits, '_' and '-' "
                              "(at most 64), e.g. 2026-11-23")
        if self.collector is not None and not self.collector.startswith(("http://", "https://")):
            raise ConfigError(f"--collector {self.collector!r} is not an http:// or https:// URL")
        checks = [(self.lease_ttl_s > 0, "lease_ttl_s", "seconds > 0"), (self.lease_wait_s >= 0, "lease_wait_s", ">= 0"),
                  (isinstance(self.history, int) and self.history >= 1, "history", "an integer >= 1"),
                  (isinstance(self.max_attempts, int) and self.max_attempts >= 1, "max_attempts", "an integer >= 1"),
                  (isinstance(self.phone_failures, int) and self.phone_failures >= 1, "phone_failures",
                   "an integer >= 1")]
        for ok, name, allowed in checks:
            if not ok:
                raise ConfigError(f"nightly option {name}={getattr(self, name)!r} is not allowed; use {allowed}")

    @property
    def night_name(self) -> str:
        return self.night or datetime.now(UTC).strftime("%Y-%m-%d")


@dataclass
class NightOutcome:
    night: str
    out: Path
    jobs_total: int = 0
    jobs_skipped: int = 0          # already stored before this run
    results: list[dict[str, Any]] = field(default_factory=list)       # every stored document of the night
    ran: list[dict[str, Any]] = field(default_factory=list)           # stored by this run
    regressions: list[Regression] = field(default_factory=list)
    previous_nights: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    phone_busy_s: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return EXIT_REGRESSION
        if self.errors or any(d.get("status") != "ok" for d in self.ran):
            return EXIT_JOBS_FAILED
        return 0


def _write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"


def build_night_bundles(farm: FarmConfig, jobs: list[Job], out: Path, steps) -> dict[tuple[str, ...], Any]:
    """Export (or reuse) one bundle per model x format x mode (x dynamic configuration) that the jobs need.

    Keys are ``Job.bundle_key``: (model, format, mode) for the full model, with the configuration
    key appended for a ``matrix.dynamic`` one (``OUT/models/MODEL/dynamic/``).
    """
    from pipeline.deploy import build_bundles
    from pipeline.deploy_config import DeployConfig
    from pipeline.nightly.dynamic_bundles import build_dynamic_bundles
    from pipeline.palette_modes import PaletteCache

    bundles: dict[tuple[str, ...], Any] = {}
    s = farm.settings
    palettes = PaletteCache()  # a model's palettes are made once, for its full and its skip bundles
    for model in dict.fromkeys(j.model for j in jobs):
        mine = [j for j in jobs if j.model == model]
        full = [j for j in mine if j.dynamic is None]
        if full:
            formats = tuple(dict.fromkeys(j.format for j in full))
            modes = tuple(dict.fromkeys(j.mode for j in full))
            cfg = DeployConfig(device="sim", model=model, formats=formats, modes=modes,
                               out=str(out / "models" / _slug(model)), **s.deploy_fields())
            built, _ = build_bundles(cfg, steps, out / "models" / _slug(model), palette_cache=palettes)
            for info in built:
                bundles[(model, info.format, info.mode)] = info
        dyn = [j for j in mine if j.dynamic is not None]
        if dyn:
            bundles.update(build_dynamic_bundles(
                model, list(dict.fromkeys(j.dynamic for j in dyn)), tuple(dict.fromkeys(j.format for j in dyn)),
                tuple(dict.fromkeys(j.mode for j in dyn)), s, out / "models" / _slug(model), steps,
                palette_cache=palettes))
    return bundles


def load_bundles_dir(folder: str | Path) -> dict[tuple[str, ...], Any]:
    """Bundles exported beforehand (``--bundles DIR``: one bundle folder per file, any depth 1-3).

    The key is (source model, format, mode) from each manifest, plus the configuration key of a
    skip configuration's bundle (its ``dynamic.json``, written by ``pipeline.dynamic``); host accuracy is not measured
    for these (``host.accuracy_top1`` stays null), so accuracy regressions need the normal export.
    """
    from pipeline.deploy import BundleInfo

    root = Path(folder)
    found: dict[tuple[str, str, str], Any] = {}
    manifests = sorted(p for pattern in ("*/manifest.json", "*/*/manifest.json", "*/*/*/manifest.json")
                       for p in root.glob(pattern))
    for mpath in manifests:
        try:
            m = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        key: tuple[str, ...] = (str(m.get("source_model") or ""), str(m.get("format")), str(m.get("mode")))
        dyn_file = mpath.parent / "dynamic.json"
        if dyn_file.is_file():
            try:
                config = str(json.loads(dyn_file.read_text(encoding="utf-8")).get("config") or "full")
            except (OSError, ValueError):
                continue
            key = key if config == "full" else (*key, config)
        found.setdefault(key, BundleInfo(key[1], key[2], mpath.parent, m))
    if not found:
        raise ConfigError(f"--bundles {root}: no bundle folders (with manifest.json) found",
                          next_step="Point it at the bundles/ folder written by `python -m pipeline.deploy`.")
    return found


def _start_sim_phones(farm: FarmConfig, stack: ExitStack, out: Path, log) -> dict[str, str]:
    from device_runner.sim import SimulatedPhone

    addresses = {}
    for i, spec in enumerate(farm.phones):
        profile = spec.tags[0] if spec.tags else "pixel-8"
        phone = stack.enter_context(SimulatedPhone(root=out / "sim" / spec.name, profile=profile, port=0,
                                                   serial=f"SIMFARM{i + 1:02d}"))
        addresses[spec.name] = phone.serial
    log(f"started {len(addresses)} simulated phone(s): their figures are simulated (host CPU)")
    return addresses


def run_nightly(opts: NightOptions, *, farm: FarmConfig | None = None, log=None,
                bundles: dict[tuple[str, ...], Any] | None = None) -> NightOutcome:
    """Run the missing jobs of one night and compare it with the previous nights.

    ``bundles`` ``Job.bundle_key`` -> BundleInfo skips the export (tests, ``--bundles``).
    """
    import time

    from pipeline.cli_support import is_interactive
    from pipeline.deploy import ResultStorage
    from pipeline.nightly.history import FINAL_STATUSES, CollectorClient
    from pipeline.nightly.leases import LeaseManager
    from pipeline.nightly.scheduler import PhoneState, Scheduler, SchedulerOptions
    from pipeline.steps import Steps

    t_start = time.perf_counter()
    farm = farm or load_farm(opts.farm)
    if opts.overrides:
        try:
            farm = replace(farm, settings=replace(farm.settings, **opts.overrides))
        except TypeError as err:
            raise ConfigError(f"nightly settings: {err}") from None
    interactive = is_interactive() if opts.interactive is None else opts.interactive
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    night = opts.night_name
    out = Path(opts.out)
    try:
        night_dir = out / "nights" / night
        night_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write to the output folder {out} ({err.strerror or err})",
                          next_step="Pick a writable --out folder.") from None
    outcome = NightOutcome(night=night, out=night_dir)

    with ExitStack() as stack:
        local_db = f"sqlite:///{(out / 'nightly.db').resolve()}"
        if opts.collector:
            collector_url = opts.collector
            lease_db = opts.lease_db or f"sqlite:///{(out / 'leases.db').resolve()}"
            if not opts.lease_db:
                log(f"note: leases are kept in {out / 'leases.db'}: only nightly processes using this --out "
                    "folder share them; give --lease-db postgresql://... when hosts share phones")
        else:
            from results.collector import start_collector_in_thread

            handle = start_collector_in_thread(local_db)
            stack.callback(handle.stop)
            collector_url = handle.url
            lease_db = opts.lease_db or local_db
        client = CollectorClient(collector_url, opts.collector_token)

        all_jobs = farm.jobs()
        outcome.jobs_total = len(all_jobs)
        done = client.done_keys(night)
        jobs = [j for j in all_jobs if j.key not in done]
        outcome.jobs_skipped = len(all_jobs) - len(jobs)
        if outcome.jobs_skipped:
            log(f"night {night}: {outcome.jobs_skipped} of {len(all_jobs)} job(s) already stored; running the "
                f"{len(jobs)} missing")

        if jobs:
            steps = Steps(total=4, interactive=interactive)
            if bundles is None:
                bundles = build_night_bundles(farm, jobs, out, steps)
            missing = sorted({j.bundle_key for j in jobs} - set(bundles))
            if missing:
                raise ConfigError("no bundle for " + ", ".join("/".join(k) for k in missing),
                                  next_step="Export them (leave out --bundles) or add them to the --bundles folder.")
            addresses = (_start_sim_phones(farm, stack, out, log) if farm.simulated
                         else {p.name: p.address for p in farm.phones})
            storage = ResultStorage(collector_url, opts.collector_token, f"sqlite:///{(out / 'nightly-local.db').resolve()}",
                               log)
            stack.callback(storage.close)
            leases = LeaseManager(lease_db, ttl_s=opts.lease_ttl_s)
            stack.callback(leases.close)
            phones = [PhoneState(spec=p, address=addresses[p.name]) for p in farm.phones]

            progress = _Progress(len(jobs), interactive, log)
            stack.callback(progress.close)

            def store(doc: dict[str, Any]) -> None:
                storage.store(doc)
                outcome.ran.append(doc)

            def already_done(job: Job) -> bool:
                try:
                    return job.key in {k for k in client.done_keys(night)}
                except Exception:  # noqa: BLE001 - when in doubt, run it
                    return False

            sched = Scheduler(
                night=night, phones=phones, jobs=jobs, bundles=bundles, settings=farm.settings, leases=leases,
                store=store, runs_dir=out / "runs" / night,
                options=SchedulerOptions(max_attempts=opts.max_attempts, phone_failures=opts.phone_failures,
                                         lease_wait_s=opts.lease_wait_s),
                already_done=already_done, log=progress.log, on_job_done=progress.job_done,
                attempt_base=client.attempts_used(night),
            )
            sched.run()
            outcome.errors.extend(sched.errors)
            outcome.phone_busy_s = {n: p.busy_s for n, p in sched.phones.items()}
        else:
            log(f"night {night}: every job already has a final result; nothing to run")

        outcome.results = client.night_documents(night)
        outcome.previous_nights = client.previous_nights(night, count=opts.history)
        history = client.history_documents(outcome.previous_nights)
    outcome.regressions = find_regressions(outcome.results, history, opts.rule)
    by_key: dict[str, dict[str, Any]] = {}
    for doc in sorted(outcome.results, key=lambda d: str(d.get("started_at"))):
        key = ((doc.get("host") or {}).get("nightly") or {}).get("job_key") or doc.get("run_id")
        by_key[key] = doc
    unfinished = [d for d in by_key.values() if d.get("status") not in FINAL_STATUSES]

    _write_json_atomic(night_dir / "results.json", outcome.results)
    _write_json_atomic(night_dir / "regressions.json", [r.to_dict() for r in outcome.regressions])
    _write_json_atomic(night_dir / "trends.json",
                       trend_rows(list(zip(outcome.previous_nights, history, strict=True))
                                  + [(night, outcome.results)]))
    if outcome.results:
        from results.report import render_report

        render_report(outcome.results, night_dir / "report.html", title=f"nightly run {night}")
    if unfinished:
        outcome.errors.append(f"{len(unfinished)} job(s) without a final result: " + ", ".join(
            f"{d.get('run_id')} ({d.get('status')})" for d in unfinished[:10]))
    outcome.wall_s = time.perf_counter() - t_start
    return outcome


class _Progress:
    """A bar on a terminal; one line per finished job elsewhere (CI logs, cron mail)."""

    def __init__(self, total: int, interactive: bool, log) -> None:
        import threading

        self.total = total
        self.count = 0
        self._lock = threading.Lock()
        self._log = log
        self._bar = None
        if interactive:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("night"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                                 TimeElapsedColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("jobs", total=total)

    def log(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            self._log(text)

    def job_done(self, st) -> None:
        with self._lock:
            self.count += 1
            n = self.count
        doc = st.result
        if doc is None:
            line = f"[{n}/{self.total}] {st.job.label()}: skipped (stored by another process)"
        else:
            lat = doc.get("latency") or {}
            ran_on = ((doc.get("host") or {}).get("nightly") or {}).get("phone") or "-"
            med = f" median {lat['median_ms']:.3f} ms" if lat.get("median_ms") is not None else ""
            moved = f" (ran on {ran_on})" if ran_on not in (st.job.phone, "-") else ""
            line = f"[{n}/{self.total}] {st.job.label()}: {doc.get('status')}{med}{moved} run_id={doc.get('run_id')}"
        if self._bar is not None:
            self._bar.advance(self._task, 1)
        else:
            self._log(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
