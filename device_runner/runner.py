"""Run one bundle on one phone: prepare, push, start the app with job.json, wait, collect.

The runner is the host half of the job/result contract (``results/schema``). It never times
anything itself: the app (or the simulated phone's app) measures and writes the result document;
the runner checks the phone's state before each job (thermal status, battery floor, screen),
pushes the bundle with a sha256 check, starts the benchmark activity, waits for the result file,
pulls it and adds what only the host knows (the On-Device Power Monitor energy around the
measured window, the bundle path, warnings).

Every path through :meth:`JobRunner.run_bundle` ends with exactly one result document: the
app's, or one the host writes with status ``thermal_abort``, ``crashed`` or ``timeout`` when the
app could not write one. Errors that concern the whole phone (unreachable, battery below the
floor) raise instead.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, DeviceError

APP_PACKAGE = "org.vitpalette.bench"
APP_ACTIVITY = ".BenchmarkActivity"
DEVICE_WORK_DIR = "/data/local/tmp/vitpalette"
APP_FILES_DIR = f"/sdcard/Android/data/{APP_PACKAGE}/files"
JOB_SCHEMA_VERSION = 1
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")


class BatteryTooLowError(DeviceError):
    """The battery is under the floor set for measuring."""


@dataclass(frozen=True)
class RunSettings:
    """How each job runs on the phone (one object, validated when built)."""

    threads: int = 1
    delegate: str = "cpu"
    warmup_runs: int = 5
    measured_runs: int = 30
    min_duration_s: float = 2.0
    cooldown_s: float = 5.0
    thermal_timeout_s: float = 120.0
    battery_floor_pct: int = 20
    sample_interval_ms: int = 100
    idle_baseline_s: float = 2.0
    job_timeout_s: float = 600.0
    collector_url: str | None = None
    collector_token: str | None = None
    run_set: str | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"RunSettings.{name}={getattr(self, name)!r} is not allowed; use {allowed}")

        for name in ("min_duration_s", "cooldown_s", "thermal_timeout_s", "battery_floor_pct",
                     "idle_baseline_s", "job_timeout_s", "sample_interval_ms", "threads",
                     "warmup_runs", "measured_runs"):
            value = getattr(self, name)
            need(isinstance(value, int | float) and not isinstance(value, bool), name, "a number")

        need(isinstance(self.threads, int) and 1 <= self.threads <= 64, "threads", "an integer 1-64")
        need(self.delegate in DELEGATES, "delegate", "one of " + ", ".join(DELEGATES))
        need(isinstance(self.warmup_runs, int) and self.warmup_runs >= 0, "warmup_runs", "an integer >= 0")
        need(isinstance(self.measured_runs, int) and self.measured_runs >= 1, "measured_runs", "an integer >= 1")
        need(self.min_duration_s >= 0, "min_duration_s", "a number of seconds >= 0")
        need(self.cooldown_s >= 0, "cooldown_s", "a number of seconds >= 0")
        need(self.thermal_timeout_s >= 0, "thermal_timeout_s", "a number of seconds >= 0")
        need(0 <= self.battery_floor_pct <= 100, "battery_floor_pct", "a percentage 0-100")
        need(1 <= self.sample_interval_ms <= 60000, "sample_interval_ms", "1-60000 ms")
        need(self.idle_baseline_s >= 0, "idle_baseline_s", "a number of seconds >= 0")
        need(self.job_timeout_s > 0, "job_timeout_s", "a number of seconds > 0")
        need(self.collector_url is None or self.collector_url.startswith(("http://", "https://")),
             "collector_url", "an http:// or https:// URL")


@dataclass
class Bundle:
    """A bundle folder as written by ``converters`` (read through its manifest only)."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Bundle:
        folder = Path(path)
        manifest_path = folder / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DeviceError(f"bundle {folder} has no manifest.json",
                              next_step="Export it again with `python -m converters.export`.") from None
        except (OSError, ValueError) as err:
            raise DeviceError(f"bundle {folder}: manifest.json cannot be read ({err})",
                              next_step="Export it again with `python -m converters.export`.") from None
        for key in ("format", "mode", "model_file", "sha256", "bytes"):
            if key not in manifest:
                raise DeviceError(f"bundle {folder}: manifest.json lacks '{key}'",
                                  next_step="Export it again with `python -m converters.export`.")
        return cls(folder, manifest)

    @property
    def name(self) -> str:
        return self.path.name

    def files(self) -> list[str]:
        names = [self.manifest["model_file"]]
        for key in ("golden_input", "golden_output"):
            if self.manifest.get(key):
                names.append(self.manifest[key])
        return names


@dataclass(frozen=True)
class TraceConfiguration:
    """One configuration of a budget trace: its bundle, a name, its expected cost and accuracy proxy."""

    bundle: Bundle
    name: str
    cost_ms: float
    accuracy: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > 128:
            raise ConfigError(f"TraceConfiguration.name={self.name!r} is not allowed; use 1-128 characters")
        for key in ("cost_ms", "accuracy"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
                    or abs(value) == float("inf"):
                raise ConfigError(f"TraceConfiguration {self.name!r}: {key}={value!r} is not allowed; use a finite number")
        if self.cost_ms < 0:
            raise ConfigError(f"TraceConfiguration {self.name!r}: cost_ms={self.cost_ms!r} must be >= 0")


@dataclass
class PrepareReport:
    battery_level_pct: int | None = None
    charging: bool = False
    thermal_status: int | None = None
    warnings: list[str] = field(default_factory=list)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RailSampler:
    """Reads the On-Device Power Monitor rails on a background thread (host timestamps).

    The energy of a window is interpolated from the cumulative rail counters sampled around it,
    so the figure covers exactly the app's measured loop, not its start-up or model load.
    """

    def __init__(self, read_rails: Callable[[], dict[str, int] | None], interval_s: float = 0.25) -> None:
        self._read = read_rails
        self._interval_s = interval_s
        self.samples: list[tuple[float, int]] = []  # (host time, summed energy µWs)
        self.rails: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def _sample(self) -> None:
        rails = self._read()
        if rails:
            self.rails = sorted(rails)
            self.samples.append((time.time(), int(sum(rails.values()))))

    def start(self) -> None:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="odpm-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._sample()
            except Exception as err:  # noqa: BLE001 - a failed read ends sampling, recorded below
                self.error = f"{type(err).__name__}: {err}"
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        try:
            self._sample()
        except Exception as err:  # noqa: BLE001
            self.error = self.error or f"{type(err).__name__}: {err}"

    def energy_uws_between(self, t0: float, t1: float) -> float | None:
        """Cumulative energy at t1 minus at t0, linearly interpolated; None when not bracketed."""
        pts = self.samples
        if len(pts) < 2 or t0 < pts[0][0] or t1 > pts[-1][0] or t1 <= t0:
            return None

        def at(t: float) -> float:
            for (ta, ea), (tb, eb) in zip(pts, pts[1:], strict=False):
                if ta <= t <= tb:
                    return ea if tb == ta else ea + (eb - ea) * (t - ta) / (tb - ta)
            return float(pts[-1][1])

        return at(t1) - at(t0)


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class JobRunner:
    """Runs bundles on one phone with the hygiene users of this field expect."""

    def __init__(
        self,
        device: Any,
        settings: RunSettings,
        *,
        energy_method: str = "battery",
        simulated: bool = False,
        log: Callable[[str], None] = print,
        progress: Callable[[int, int], None] | None = None,
        poll_interval_s: float = 0.25,
    ) -> None:
        self.device = device
        self.settings = settings
        self.energy_method = energy_method
        self.simulated = simulated
        self.log = log
        self.progress = progress
        self.poll_interval_s = poll_interval_s
        self._device_info: dict[str, Any] | None = None
        self._last_job_end: float | None = None
        self._offset_s = 0.0

    # -- phone state -------------------------------------------------------------------------
    def device_info(self) -> dict[str, Any]:
        if self._device_info is None:
            props = self.device.properties()
            get = props.get if isinstance(props, dict) else lambda k, d=None: getattr(props, k, d)
            self._device_info = {
                "model": get("model") or "unknown",
                "manufacturer": get("manufacturer") or "unknown",
                "android_version": str(get("android_version") or "unknown"),
                "sdk_int": int(get("sdk_int") or 0),
                "soc": get("soc"),
                "abi": get("abi") or "unknown",
                "serial": get("serial"),
                "simulated": self.simulated,
            }
        return self._device_info

    def prepare(self) -> PrepareReport:
        """Wake the screen, check the battery floor and warn when energy is not measurable."""
        report = PrepareReport()
        for cmd in ("input keyevent KEYCODE_WAKEUP", "wm dismiss-keyguard"):
            try:
                self.device.shell(cmd, timeout_s=10)
            except DeviceError:
                report.warnings.append(f"could not run `{cmd}` to keep the screen on")
        battery = self.device.battery()
        plugged = getattr(battery, "plugged", None)
        status = str(getattr(battery, "status", "") or "").lower()
        report.charging = bool(plugged) and plugged not in ("none", "unplugged") or status == "charging"
        report.battery_level_pct = self.check_battery()
        if report.charging and self.energy_method == "battery":
            report.warnings.append(
                "the phone is charging: battery energy readings are not a measurement while it charges; "
                "unplug it and use adb over Wi-Fi (`adb tcpip 5555`)"
            )
        try:
            report.thermal_status = self.device.thermal_status()
        except DeviceError:
            report.warnings.append("thermal status unreadable")
        for w in report.warnings:
            self.log(f"warning: {w}")
        return report

    def wait_until_cool(self) -> int | None:
        """Wait for thermal status 0; returns the last status read (None when unreadable)."""
        deadline = time.monotonic() + self.settings.thermal_timeout_s
        status: int | None = None
        while True:
            try:
                status = self.device.thermal_status()
            except DeviceError:
                return None
            if status == 0 or time.monotonic() >= deadline:
                return status
            time.sleep(min(5.0, max(0.1, self.settings.thermal_timeout_s / 20)))

    # -- one job -----------------------------------------------------------------------------
    def job_document(self, bundle: Bundle, run_id: str, remote_dir: str) -> dict[str, Any]:
        m = bundle.manifest
        s = self.settings
        job: dict[str, Any] = {
            "schema_version": JOB_SCHEMA_VERSION,
            "run_id": run_id,
            "created_at": utc_now(),
            "model_name": str(m.get("source_model") or m.get("model_name") or bundle.name),
            "model_file": f"{remote_dir}/{m['model_file']}",
            "format": m["format"],
            "mode": m["mode"],
            "model_sha256": m["sha256"],
            "model_bytes": int(m["bytes"]),
            "runtime": {"threads": s.threads, "delegate": s.delegate},
            "warmup_runs": s.warmup_runs,
            "measured_runs": s.measured_runs,
            "min_duration_s": s.min_duration_s,
            "cooldown_s": s.cooldown_s,
            "timeout_s": s.job_timeout_s,
            "energy": {
                "sample_interval_ms": s.sample_interval_ms,
                "idle_baseline_s": s.idle_baseline_s,
            },
        }
        if s.run_set:
            job["run_set"] = s.run_set
        if m.get("golden_input") and m.get("golden_output"):
            job["golden"] = {
                "input_file": f"{remote_dir}/{m['golden_input']}",
                "output_file": f"{remote_dir}/{m['golden_output']}",
                "atol": float(m.get("atol", 1e-4)),
                "rtol": float(m.get("rtol", 0.0)),
            }
        if s.collector_url:
            job["collector_url"] = s.collector_url
            if s.collector_token:
                job["collector_token"] = s.collector_token
        return job

    def push_bundle(self, bundle: Bundle) -> str:
        """Push the bundle's files, skipping a model file already there with the manifest's sha256.

        Every push is followed by a sha256 check on the phone (``Device.push``).
        """
        remote_dir = f"{DEVICE_WORK_DIR}/{bundle.name}"
        self.device.shell(f"mkdir -p {remote_dir}", timeout_s=30)
        for name in bundle.files():
            remote = f"{remote_dir}/{name}"
            if name == bundle.manifest["model_file"] and self.device.sha256(remote) == bundle.manifest["sha256"]:
                continue
            self.device.push(bundle.path / name, remote, progress=self.progress)
        return remote_dir

    def ensure_app(self, apk: str | os.PathLike[str] | None = None) -> None:
        """Install the benchmark app from ``apk`` when given; fail clearly when it is missing."""
        if apk:
            self.device.install(apk)
        if not self.device.is_installed(APP_PACKAGE):
            raise DeviceError(
                f"the benchmark app {APP_PACKAGE} is not installed on {self.device.serial}",
                next_step="Build it (android_app/README.md) and pass --apk app-debug.apk, or install it "
                "with `adb install -r app-debug.apk`.",
            )

    def cleanup(self) -> None:
        """Leave the phone clean: stop the app and remove what this tool pushed (best effort)."""
        for cmd in (f"am force-stop {APP_PACKAGE}", f"rm -rf {DEVICE_WORK_DIR}"):
            try:
                self.device.shell(cmd, timeout_s=30)
            except Exception:  # noqa: BLE001 - called while stopping; nothing more to do
                pass

    def check_battery(self) -> int | None:
        """Raise BatteryTooLowError when the battery is under the floor; returns the level."""
        level = getattr(self.device.battery(), "level_pct", None)
        if level is not None and level < self.settings.battery_floor_pct:
            raise BatteryTooLowError(
                f"battery at {level}% on {self.device_info()['model']}, under the floor of "
                f"{self.settings.battery_floor_pct}%",
                next_step="Charge the phone, then unplug it and run again (or lower --battery-floor-pct).",
                level_pct=level,
            )
        return level

    def clock_offset_s(self) -> float:
        """Phone clock minus host clock (seconds), from a round trip of `date +%s.%N`.

        Needed to place the app's measured window (phone timestamps) on the rail samples (host
        timestamps). 0.0 when the phone's date cannot print nanoseconds.
        """
        t0 = time.time()
        res = self.device.shell("date +%s.%N", timeout_s=15)
        t1 = time.time()
        try:
            phone = float(res.stdout.strip())
        except ValueError:
            return 0.0
        return phone - (t0 + t1) / 2.0

    def run_bundle(self, bundle: Bundle, run_id: str, *, out_dir: Path | None = None) -> dict[str, Any]:
        """Run one bundle; always returns one result document (app's or host-made)."""
        started_at = self._before_job()
        remote_dir = self.push_bundle(bundle)
        job = self.job_document(bundle, run_id, remote_dir)
        return self._execute(job, run_id, remote_dir, started_at, out_dir, {"bundle": str(bundle.path)})

    def trace_job_document(self, configurations: Sequence[TraceConfiguration], budgets_ms: Sequence[float],
                           run_id: str, remote_dirs: Sequence[str], *, frames: int | None = None) -> dict[str, Any]:
        """The job of a budget trace: model_file/golden of the first configuration, all of them listed."""
        job = self.job_document(configurations[0].bundle, run_id, remote_dirs[0])
        job["budget_trace"] = {
            "configurations": [
                {"name": c.name, "file": f"{d}/{c.bundle.manifest['model_file']}", "sha256": c.bundle.manifest["sha256"],
                 "cost_ms": float(c.cost_ms), "accuracy": float(c.accuracy)}
                for c, d in zip(configurations, remote_dirs, strict=True)
            ],
            "budgets_ms": [float(b) for b in budgets_ms],
        }
        if frames is not None:
            job["budget_trace"]["frames"] = int(frames)
        return job

    def run_trace(self, configurations: Sequence[TraceConfiguration], budgets_ms: Sequence[float], run_id: str, *,
                  frames: int | None = None, out_dir: Path | None = None) -> dict[str, Any]:
        """Run a budget trace: the app switches configuration per frame (see the job schema's budget_trace).

        Every configuration's bundle is pushed (sha256-checked); the job's model_file and golden
        pair are the first configuration's (list the full model first). Returns one result
        document like :meth:`run_bundle`; its ``budget_trace`` section holds deadline misses,
        switches, the mean accuracy proxy and the per-frame records.
        """
        configurations = list(configurations)
        if not configurations:
            raise ConfigError("run_trace needs at least one configuration",
                              next_step="Pass the exported front bundles, the full model first.")
        names = [c.name for c in configurations]
        folders = [c.bundle.name for c in configurations]
        for what, values in (("name", names), ("bundle folder name", folders)):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ConfigError(f"run_trace: configurations share the {what} {', '.join(dupes)}",
                                  next_step="Give every configuration its own name and bundle folder.")
        budgets = [float(b) for b in budgets_ms]
        if not budgets or any(not (b > 0) or b != b or b == float("inf") for b in budgets):
            raise ConfigError(f"run_trace: budgets_ms must be a non-empty list of finite numbers > 0, got "
                              f"{list(budgets_ms)[:5]!r}...", next_step="Fix the budget trace.")
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
            raise ConfigError(f"run_trace: frames must be an integer >= 1, got {frames!r}")
        started_at = self._before_job()
        remote_dirs = [self.push_bundle(c.bundle) for c in configurations]
        job = self.trace_job_document(configurations, budgets, run_id, remote_dirs, frames=frames)
        return self._execute(job, run_id, remote_dirs[0], started_at, out_dir,
                             {"bundle": str(configurations[0].bundle.path),
                              "trace_bundles": {c.name: str(c.bundle.path) for c in configurations}})

    def _before_job(self) -> str:
        """Cool down since the last job, check the battery floor; returns the start time."""
        if self._last_job_end is not None and self.settings.cooldown_s > 0:
            remaining = self.settings.cooldown_s - (time.monotonic() - self._last_job_end)
            if remaining > 0:
                time.sleep(remaining)
        started_at = utc_now()
        self.check_battery()  # a long run can drain the phone below the floor
        return started_at

    def _execute(self, job: dict[str, Any], run_id: str, remote_dir: str, started_at: str, out_dir: Path | None,
                 host_extra: dict[str, Any]) -> dict[str, Any]:
        """Wait until cool, push job.json, start the app, collect its result (or write one)."""
        status = self.wait_until_cool()
        if status is not None and status > 0:
            self._last_job_end = time.monotonic()
            return self._host_result(job, "thermal_abort", started_at,
                                     f"thermal status stayed at {status} (want 0) for "
                                     f"{self.settings.thermal_timeout_s:.0f} s before the job; job not run",
                                     thermal_before=status)

        job_path = f"{remote_dir}/job-{run_id}.json"
        self._push_json(job, job_path, out_dir)
        result_path = f"{APP_FILES_DIR}/results/{run_id}.json"

        sampler = None
        idle_window: tuple[float, float] | None = None
        if self.energy_method == "odpm":
            # idle baseline first, measured the same way, with the app stopped
            self.device.force_stop(APP_PACKAGE)
            self._offset_s = self.clock_offset_s()
            sampler = RailSampler(self._read_rails)
            sampler.start()
            t_idle = time.time()
            time.sleep(self.settings.idle_baseline_s)
            idle_window = (t_idle, time.time())
        try:
            self.device.force_stop(APP_PACKAGE)
            self.device.start_app(f"{APP_PACKAGE}/{APP_ACTIVITY}", extras={"job": job_path})
            doc = self._wait_for_result(job, result_path, started_at, out_dir)
        finally:
            if sampler:
                sampler.stop()
            self._last_job_end = time.monotonic()
        host = dict(doc.get("host") or {})
        host.update({"hostname": platform.node(), **host_extra, "job_file": job_path})
        if sampler:
            host["energy_odpm"] = self._odpm_energy(doc, sampler, idle_window)
        doc["host"] = host
        return doc

    # -- helpers -----------------------------------------------------------------------------
    def _read_rails(self) -> dict[str, int] | None:
        rails = self.device.power_rails()
        if not rails:
            return None
        out = {}
        for name, value in rails.items():
            out[name] = int(getattr(value, "energy_uws", value))
        return out

    def _push_json(self, doc: dict[str, Any], remote: str, out_dir: Path | None) -> None:
        local_dir = out_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        local_dir.mkdir(parents=True, exist_ok=True)
        local = local_dir / Path(remote).name
        tmp = local.with_name(local.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        os.replace(tmp, local)
        self.device.push(local, remote)

    def _result_exists(self, path: str) -> bool:
        res = self.device.shell(f"ls {path}", timeout_s=15, check=False)
        return res.exit_code == 0

    def _app_running(self) -> bool | None:
        res = self.device.shell(f"pidof {APP_PACKAGE}", timeout_s=15, check=False)
        if res.exit_code == 127:
            return None
        return res.exit_code == 0 and res.stdout.strip() != ""

    def _wait_for_result(self, job: dict[str, Any], result_path: str, started_at: str,
                         out_dir: Path | None) -> dict[str, Any]:
        deadline = time.monotonic() + self.settings.job_timeout_s + 30
        gone = 0
        while time.monotonic() < deadline:
            if self._result_exists(result_path):
                return self._pull_result(result_path, job, started_at, out_dir)
            running = self._app_running()
            gone = gone + 1 if running is False else 0
            if gone >= 3 and not self._result_exists(result_path):
                return self._host_result(job, "crashed", started_at,
                                         "the benchmark app stopped without writing a result "
                                         "(see `adb logcat -b crash`)")
            time.sleep(self.poll_interval_s)
        self.device.force_stop(APP_PACKAGE)
        return self._host_result(job, "timeout", started_at,
                                 f"no result after {self.settings.job_timeout_s:.0f} s; the app was stopped")

    def _pull_result(self, result_path: str, job: dict[str, Any], started_at: str,
                     out_dir: Path | None) -> dict[str, Any]:
        local_dir = out_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        local_dir.mkdir(parents=True, exist_ok=True)
        local = local_dir / f"{job['run_id']}.result.json"
        self.device.pull(result_path, local)
        try:
            doc = json.loads(local.read_text(encoding="utf-8"))
        except ValueError as err:
            return self._host_result(job, "crashed", started_at,
                                     f"the app's result file {result_path} is not JSON ({err})")
        if not isinstance(doc, dict) or doc.get("run_id") != job["run_id"]:
            return self._host_result(job, "crashed", started_at,
                                     f"the app's result file {result_path} is for another run")
        return doc

    def _host_result(self, job: dict[str, Any], status: str, started_at: str, error: str, *,
                     thermal_before: int | None = None) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "run_id": job["run_id"],
            **({"run_set": job["run_set"]} if job.get("run_set") else {}),
            "status": status,
            "started_at": started_at,
            "finished_at": utc_now(),
            "device": self.device_info(),
            "model": {
                "name": job["model_name"],
                "file": job["model_file"],
                "format": job["format"],
                "mode": job["mode"],
                "bytes": job["model_bytes"],
                "sha256": job["model_sha256"],
            },
            "runtime": {
                "name": "onnxruntime" if job["format"] == "onnx" else "litert",
                "version": None,
                "threads": job["runtime"]["threads"],
                "delegate": job["runtime"]["delegate"],
            },
            "latency": None,
            "energy": None,
            "thermal": {"before": thermal_before, "after": None},
            "peak_memory_bytes": None,
            "golden": None,
            "error": error,
            "host": {"hostname": platform.node(), "written_by": "host runner"},
        }

    def _odpm_energy(self, doc: dict[str, Any], sampler: RailSampler,
                     idle_window: tuple[float, float] | None) -> dict[str, Any]:
        """ODPM energy over the app's measured window, idle baseline measured the same way."""
        out: dict[str, Any] = {"method": "odpm", "rails": sampler.rails, "per_inference_mj": None,
                               "total_mj": None, "idle_power_mw": None, "window_s": None, "note": None,
                               "clock_offset_s": self._offset_s}
        lat = doc.get("latency") or {}
        window_s = lat.get("measured_s")
        runs = lat.get("runs")
        if doc.get("status") != "ok" or not window_s or not runs or not doc.get("finished_at"):
            out["note"] = "no measured window in the result"
            return out
        # the app's clock -> the host's, so the window lines up with the rail samples
        t1 = _parse_iso(doc["finished_at"]) - self._offset_s
        t0 = t1 - float(window_s)
        total = sampler.energy_uws_between(t0, t1)
        idle = idle_s = None
        if idle_window is not None:
            idle_s = idle_window[1] - idle_window[0]
            idle = sampler.energy_uws_between(*idle_window)
        if total is None:
            out["note"] = sampler.error or "rail samples do not bracket the measured window"
            return out
        out["window_s"] = float(window_s)
        out["total_mj"] = total / 1000.0
        if idle is not None and idle_s:
            idle_power_mw = idle / 1000.0 / idle_s
            out["idle_power_mw"] = idle_power_mw
            net_mj = total / 1000.0 - idle_power_mw * float(window_s)
        else:
            net_mj = total / 1000.0
            out["note"] = "no idle baseline before the window; per-inference energy includes idle power"
        out["net_mj"] = net_mj
        out["per_inference_mj"] = net_mj / int(runs)
        return out
