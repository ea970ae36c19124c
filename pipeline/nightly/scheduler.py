"""Run a night's jobs on a farm: one worker thread per phone, leases, bounded retries, one result each.

Each job has a home phone (every phone runs the whole matrix, so each configuration has a history
per phone). A worker takes the jobs of its phone one at a time while it holds the phone's lease,
and gives the lease back whenever it has nothing to run, so two nightly processes sharing phones
take turns instead of waiting on each other.

When a phone fails (connection dropped, unreachable, battery under the floor) the job is tried
again after reconnecting; after ``phone_failures`` failures in a row the phone is dropped for the
night and its jobs move to the other phones of the same profile (``PhoneSpec.group``). A job is
tried at most ``max_attempts`` times. Every job ends with exactly one stored result: the app's, the
runner's (timeout, crash, thermal abort), or, when no phone could run it, one written here with
status ``cancelled`` and the reasons in ``error`` (a re-run of the night tries those again).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DeviceError
from pipeline.nightly.farm import Job, NightSettings, PhoneSpec
from pipeline.nightly.history import nightly_run_id
from pipeline.nightly.leases import LeaseError, LeaseManager
from pipeline.nightly.regressions import dynamic_model_name


@dataclass
class JobState:
    job: Job
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)   # phones it failed on and may not go back to
    running_on: str | None = None
    done: bool = False
    result: dict[str, Any] | None = None
    skipped: bool = False       # another process stored it meanwhile


@dataclass
class PhoneState:
    spec: PhoneSpec
    address: str
    dropped: str | None = None  # why, once dropped
    failures_in_row: int = 0
    busy_s: float = 0.0


@dataclass(frozen=True)
class SchedulerOptions:
    max_attempts: int = 3
    phone_failures: int = 2
    lease_wait_s: float = 3 * 3600.0
    lease_poll_s: float = 1.0
    connect_timeout_s: float = 10.0


class Scheduler:
    """Runs ``jobs`` on ``phones``; ``store(doc)`` is called exactly once per job."""

    def __init__(
        self,
        *,
        night: str,
        phones: list[PhoneState],
        jobs: list[Job],
        bundles: dict[tuple[str, str, str], Any],
        settings: NightSettings,
        leases: LeaseManager,
        store: Callable[[dict[str, Any]], None],
        runs_dir: Path,
        options: SchedulerOptions | None = None,
        already_done: Callable[[Job], bool] | None = None,
        connect: Callable[[PhoneState], Any] | None = None,
        log: Callable[[str], None] = print,
        on_job_done: Callable[[JobState], None] | None = None,
        attempt_base: dict[str, int] | None = None,
    ) -> None:
        self.night = night
        self.phones = {p.spec.name: p for p in phones}
        self.states = [JobState(j) for j in jobs]
        self.bundles = bundles
        self.settings = settings
        self.leases = leases
        self._store = store
        self.runs_dir = runs_dir
        self.options = options or SchedulerOptions()
        self.already_done = already_done or (lambda job: False)
        self.connect = connect or self._connect
        self.log = log
        self.on_job_done = on_job_done
        self._cond = threading.Condition()
        self._store_lock = threading.Lock()
        self.errors: list[str] = []
        self.attempt_base = attempt_base or {}  # attempts stored by earlier runs of the night (unique run ids)

    # ------------------------------------------------------------------------------ bookkeeping
    def _eligible(self, st: JobState, phone: PhoneState) -> bool:
        if st.done or st.running_on is not None or st.job.group != phone.spec.group:
            return False
        if phone.spec.name in st.excluded:
            return False
        home = self.phones.get(st.job.phone)
        return st.job.phone == phone.spec.name or home is None or home.dropped is not None

    def _may_come(self, phone: PhoneState) -> bool:
        """Could a job still become runnable on ``phone`` (in flight elsewhere, or homed on a live phone)?"""
        for st in self.states:
            if st.done or st.job.group != phone.spec.group or phone.spec.name in st.excluded:
                continue
            if st.running_on is not None:
                return True
            home = self.phones.get(st.job.phone)
            if home is not None and home.dropped is None and home is not phone:
                return True
        return False

    def _next_job(self, phone: PhoneState, *, wait: bool) -> JobState | None:
        with self._cond:
            while True:
                if phone.dropped is not None:
                    return None
                mine = [s for s in self.states if self._eligible(s, phone)]
                if mine:
                    mine.sort(key=lambda s: s.job.phone != phone.spec.name)  # own jobs first
                    return mine[0]
                if not wait or not self._may_come(phone):
                    return None
                self._cond.wait(timeout=1.0)

    def _finish(self, st: JobState, doc: dict[str, Any] | None) -> None:
        if doc is not None:
            with self._store_lock:
                try:
                    self._store(doc)
                except Exception as err:  # noqa: BLE001 - kept in OUT/runs; reported, never lost silently
                    self.errors.append(f"{st.job.label()}: result {doc.get('run_id')} not stored: {err}")
                    self.log(f"error: {st.job.label()}: result {doc.get('run_id')} not stored: {err}")
        with self._cond:
            st.done = True
            st.running_on = None
            st.result = doc
            self._cond.notify_all()
        if self.on_job_done:
            self.on_job_done(st)

    def _drop(self, phone: PhoneState, why: str) -> None:
        with self._cond:
            if phone.dropped is None:
                phone.dropped = why
                self.log(f"phone {phone.spec.name} dropped out of the night: {why}")
            self._cond.notify_all()

    # ------------------------------------------------------------------------------ the device
    def _connect(self, phone: PhoneState):
        from device_runner.device import Device

        return Device.connect(phone.address, profile=phone.spec.profile, timeout_s=self.options.connect_timeout_s)

    def _runners(self, device: Any, phone: PhoneState) -> tuple[dict[int, Any], str, bool]:
        from device_runner.runner import JobRunner, RunSettings

        profile = device.profile
        has_rails = device.power_rails() is not None
        energy_method = profile.energy_method(has_rails=has_rails).value
        s = self.settings
        runners: dict[int, Any] = {}
        for threads in sorted({st.job.threads for st in self.states}):
            rs = RunSettings(threads=threads, warmup_runs=s.warmup, measured_runs=s.runs,
                             min_duration_s=s.min_duration_s, cooldown_s=s.cooldown_s,
                             idle_baseline_s=s.idle_baseline_s, thermal_timeout_s=s.thermal_timeout_s,
                             battery_floor_pct=s.battery_floor_pct, job_timeout_s=s.job_timeout_s,
                             run_set=self.night)
            runners[threads] = JobRunner(device, rs, energy_method=energy_method,
                                         simulated=bool(profile.simulated or phone.spec.simulated),
                                         log=lambda text, n=phone.spec.name: self.log(f"{n}: {text}"))
        next(iter(runners.values())).prepare()
        return runners, energy_method, bool(profile.simulated)

    # ------------------------------------------------------------------------------ one worker
    def _worker(self, phone: PhoneState) -> None:
        name = phone.spec.name
        lease_id = phone.address  # unique per phone; simulated phones have their loopback address
        device = None
        runners: dict[int, Any] = {}
        energy_method = "none"
        try:
            while True:
                st = self._next_job(phone, wait=True)
                if st is None:
                    return
                if not self.leases.holds(lease_id):
                    got = self.leases.acquire(lease_id, wait_s=self.options.lease_wait_s,
                                              poll_s=self.options.lease_poll_s,
                                              should_stop=lambda: self._next_job(phone, wait=False) is None)
                    if not got:
                        if self._next_job(phone, wait=False) is None:
                            continue  # the work went elsewhere meanwhile
                        holder = self.leases.holder_of(lease_id)
                        self._drop(phone, f"leased by {holder[0] if holder else 'another process'} for longer "
                                          f"than {self.options.lease_wait_s:.0f} s")
                        return
                with self._cond:
                    st = self._next_job(phone, wait=False)
                    if st is None:
                        self.leases.release(lease_id)
                        continue
                    st.running_on = name
                if self.already_done(st.job):
                    st.skipped = True
                    self.log(f"{st.job.label()}: already stored by another process; skipped")
                    self._finish(st, None)
                    continue
                if device is None:
                    try:
                        device = self.connect(phone)
                        runners, energy_method, _ = self._runners(device, phone)
                    except Exception as err:  # noqa: BLE001 - any failure to reach the phone
                        self._attempt_failed(st, phone, f"connecting to {phone.address}: {err}")
                        if device is not None:
                            _close(device)
                        device = None
                        continue
                self._run_one(st, phone, device, runners, energy_method)
                if phone.failures_in_row:
                    _close(device)
                    device = None
                # give the phone back between jobs when nothing of ours waits for it
                if self._next_job(phone, wait=False) is None:
                    self.leases.release(lease_id)
        except LeaseError as err:
            self._drop(phone, str(err))
        finally:
            if device is not None:
                _close(device)
            try:
                self.leases.release(lease_id)
            except LeaseError:
                pass
            with self._cond:
                for st in self.states:  # nothing stays marked as running on a worker that left
                    if st.running_on == name and not st.done:
                        st.running_on = None
                self._cond.notify_all()

    def _attempt_failed(self, st: JobState, phone: PhoneState, why: str) -> None:
        self.log(f"{st.job.label()}: attempt {st.attempts + 1} on {phone.spec.name} failed: {why}")
        with self._cond:
            st.attempts += 1
            st.errors.append(f"attempt {st.attempts} on {phone.spec.name}: {why}")
            phone.failures_in_row += 1
            if phone.failures_in_row >= self.options.phone_failures:
                st.excluded.add(phone.spec.name)
            give_up = st.attempts >= self.options.max_attempts
            if give_up:
                st.done = True  # taken out of the queue now: no other worker may pick it up meanwhile
            st.running_on = None
        if phone.failures_in_row >= self.options.phone_failures:
            self._drop(phone, f"{phone.failures_in_row} failures in a row; last: {why}")
        if give_up:
            self._finish(st, self._cancelled(st, phone))
        else:
            with self._cond:
                self._cond.notify_all()

    def _run_one(self, st: JobState, phone: PhoneState, device: Any, runners: dict[int, Any],
                 energy_method: str) -> None:
        from device_runner.runner import Bundle

        job = st.job
        info = self.bundles[job.bundle_key]
        run_id = nightly_run_id(self.night, job.format, job.mode, job.threads, job.key,
                                self.attempt_base.get(job.key, 0) + st.attempts + 1, job.dynamic)
        t0 = time.monotonic()
        try:
            doc = runners[job.threads].run_bundle(Bundle(info.path, info.manifest), run_id, out_dir=self.runs_dir)
        except (DeviceError, OSError, EOFError, ConnectionError, TimeoutError) as err:
            phone.busy_s += time.monotonic() - t0
            self._attempt_failed(st, phone, f"{type(err).__name__}: {err}")
            return
        except Exception as err:  # noqa: BLE001 - adb-shell raises its own exception types
            phone.busy_s += time.monotonic() - t0
            self._attempt_failed(st, phone, f"{type(err).__name__}: {err}")
            return
        phone.busy_s += time.monotonic() - t0
        phone.failures_in_row = 0
        host = dict(doc.get("host") or {})
        host.update({
            "tool": "vit-palette-bench",
            "accuracy_top1": info.accuracy,
            "top1_agreement": info.top1_agreement,
            "energy_method_planned": energy_method,
            "threads_requested": job.threads,
            "dynamic_config": job.dynamic or "full",
            "nightly": {"night": self.night, "job_key": job.key, "home_phone": job.phone, "phone": phone.spec.name,
                        "address": phone.address, "attempt": st.attempts + 1, "dynamic": job.dynamic,
                        "holder": self.leases.holder_id, "tags": list(phone.spec.tags),
                        "earlier_attempts": list(st.errors)},
        })
        doc["host"] = host
        doc["run_set"] = self.night
        if job.dynamic:  # its own configuration wherever results are grouped by model (trends, reports)
            doc["model"] = {**(doc.get("model") or {}),
                            "name": dynamic_model_name(str((doc.get("model") or {}).get("name") or job.model),
                                                       job.dynamic)}
        _write_json_atomic(self.runs_dir / f"{run_id}.json", doc)
        with self._cond:
            st.attempts += 1
        self._finish(st, doc)

    def _cancelled(self, st: JobState, phone: PhoneState | None) -> dict[str, Any]:
        """The one result of a job no phone could run (schema-valid, written by the host)."""
        from device_runner.runner import utc_now

        job = st.job
        info = self.bundles.get(job.bundle_key)
        manifest = info.manifest if info is not None else {}
        run_id = nightly_run_id(self.night, job.format, job.mode, job.threads, job.key,
                                self.attempt_base.get(job.key, 0) + max(st.attempts, 1), job.dynamic)
        home = self.phones.get(job.phone)
        spec = home.spec if home else None
        now = utc_now()
        why = "; ".join(st.errors) or "no phone of this profile was available"
        doc = {
            "schema_version": 1, "run_id": run_id, "run_set": self.night, "status": "cancelled",
            "started_at": now, "finished_at": now,
            "device": {"model": f"{job.phone} (not reached)", "manufacturer": "unknown",
                       "android_version": "unknown", "sdk_int": 1, "soc": None, "abi": "unknown",
                       "serial": home.address if home else None, "simulated": bool(spec and spec.simulated)},
            "model": {"name": dynamic_model_name(str(manifest.get("source_model") or job.model), job.dynamic),
                      "file": str(manifest.get("model_file") or ""), "format": job.format, "mode": job.mode,
                      "bytes": int(manifest.get("bytes") or 0), "sha256": str(manifest.get("sha256") or "0" * 64)},
            "runtime": {"name": "onnxruntime" if job.format == "onnx" else "litert", "version": None,
                        "threads": job.threads, "delegate": "cpu"},
            "latency": None, "energy": None, "thermal": {"before": None, "after": None},
            "peak_memory_bytes": None, "golden": None,
            "error": f"not run after {st.attempts} attempt(s): {why}"[:4000],
            "host": {"hostname": platform.node(), "written_by": "nightly scheduler",
                     "dynamic_config": job.dynamic or "full",
                     "nightly": {"night": self.night, "job_key": job.key, "home_phone": job.phone,
                                 "phone": phone.spec.name if phone else None, "attempt": st.attempts,
                                 "dynamic": job.dynamic, "holder": self.leases.holder_id,
                                 "earlier_attempts": list(st.errors)}},
        }
        _write_json_atomic(self.runs_dir / f"{run_id}.json", doc)
        return doc

    # ------------------------------------------------------------------------------ the night
    def run(self) -> list[JobState]:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        threads = [threading.Thread(target=self._worker, args=(p,), name=f"phone:{n}", daemon=True)
                   for n, p in self.phones.items()]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)
        except KeyboardInterrupt:
            with self._cond:
                for p in self.phones.values():
                    p.dropped = p.dropped or "interrupted"
                self._cond.notify_all()
            raise
        # whatever no worker could take (its phones all dropped) ends with one cancelled result
        for st in self.states:
            if not st.done:
                st.errors.append("every phone of profile group "
                                 f"{st.job.group!r} dropped out or could not take it")
                self._finish(st, self._cancelled(st, None))
        return self.states


def _close(device: Any) -> None:
    try:
        device.close()
    except Exception:  # noqa: BLE001 - closing a dead connection
        pass


def _write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    os.replace(tmp, path)
