"""The simulated phone's benchmark app: what the Java ``BenchmarkActivity`` does, on the host CPU.

The simulated phone calls :func:`run_job` when ``am start -n org.vitpalette.bench/.BenchmarkActivity
--es job <path>`` names the benchmark activity. Like the real app it reads ``job.json``, loads the
model from the phone's file tree, checks the golden input against the golden output before
timing, runs warm-up and measured inferences (until both ``measured_runs`` and ``min_duration_s``
are met), samples the battery on its own thread, and always writes a result document (status and
error text on failure) to the app files folder, then POSTs it to the job's collector when there
is one. The document says ``device.simulated = true`` and energy method ``simulated``: the model
ran on the host CPU and the energy comes from the simulator's battery model (CPU time accounted
into it), not from a phone.

Order of work (the Java app follows the same): read + validate job -> idle baseline (battery
sampled for ``energy.idle_baseline_s`` with nothing running) -> check model file size and sha256
-> load (``init_ms``) -> first inference (golden input when given; ``first_ms``) -> golden check
-> warm-up -> measured loop with the sampler running -> cooldown is the host's business.

A job with a ``budget_trace`` (dynamic execution) replaces the measured loop by the trace: every
configuration file is checked (sha256) and loaded once and warmed up, then frame ``i`` runs the
configuration that :func:`pipeline.dynamic.selector.select_for_budget` picks for budget
``budgets_ms[i % len(budgets_ms)]`` (the rule the Java ``BudgetSelector`` mirrors); each frame's
latency is a latency sample, a frame misses when its latency exceeds its budget, and the energy
covers the whole trace window. The golden check still concerns ``model_file``.

No torch or converter imports here: onnxruntime and ai-edge-litert are imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import resource
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from results.schema import validate_job

log = logging.getLogger(__name__)

PACKAGE = "org.vitpalette.bench"
APP_FILES_DIR = f"/sdcard/Android/data/{PACKAGE}/files"
APP_VERSION = "sim-0.1.0"
THERMAL_ABORT_STATUS = 3  # PowerManager.THERMAL_STATUS_SEVERE: stop measuring, report thermal_abort
POST_ATTEMPTS = 3
POST_BACKOFF_S = (0.2, 0.5, 1.0)
MAX_ENERGY_SAMPLES = 5000
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DEVICE_KEYS = ("model", "manufacturer", "android_version", "sdk_int", "soc", "abi", "serial", "fingerprint",
                "profile", "cores")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Stop(Exception):
    """Ends the job early with a status (the result is still written)."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


# --- statistics (the Java core computes the same; definitions in the result schema) ---------------
def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    """mean, median, p90, p99 (linear interpolation), population std, trimmed mean, min, max."""
    if not samples_ms:
        raise ValueError("latency_stats needs at least one sample")
    arr = np.asarray(samples_ms, dtype=np.float64)
    srt = np.sort(arr)
    cut = len(srt) // 10
    trimmed = srt[cut: len(srt) - cut] if cut else srt
    return {
        "mean_ms": float(arr.mean()),
        "median_ms": float(np.median(arr)),
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "std_ms": float(arr.std()),
        "trimmed_mean_ms": float(trimmed.mean()),
        "min_ms": float(srt[0]),
        "max_ms": float(srt[-1]),
    }


def power_mw(current_ua: float, voltage_mv: float) -> float:
    """|I| * V: uA * mV = nW -> mW."""
    return abs(current_ua) * voltage_mv / 1e6


def trapezoid_mj(times_s: list[float], powers_mw: list[float]) -> float:
    """Energy in mJ from power samples (mW) at times (s)."""
    total = 0.0
    for i in range(1, len(times_s)):
        total += (powers_mw[i] + powers_mw[i - 1]) / 2.0 * (times_s[i] - times_s[i - 1])
    return total


# --- battery sampling ------------------------------------------------------------------------------
class _Sampler:
    """Reads battery snapshots every ``interval_s`` on its own thread (like the app's sampler)."""

    def __init__(self, battery, interval_s: float) -> None:
        self.battery = battery
        self.interval_s = interval_s
        self.samples: list[tuple[float, Any]] = []  # (monotonic time, snapshot)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sim-app-battery-sampler")
        self.max_thermal = 0

    def _take(self) -> None:
        snap = self.battery.snapshot()
        self.samples.append((time.monotonic(), snap))
        self.max_thermal = max(self.max_thermal, int(getattr(snap, "thermal_status", 0) or 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def __enter__(self) -> _Sampler:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._take()


def _mean_power_mw(samples: list[tuple[float, Any]]) -> float | None:
    if not samples:
        return None
    times = [t - samples[0][0] for t, _ in samples]
    powers = [power_mw(s.current_ua, s.voltage_mv) for _, s in samples]
    if len(samples) == 1 or times[-1] <= 0:
        return float(np.mean(powers))
    return trapezoid_mj(times, powers) / times[-1]


# --- the job -----------------------------------------------------------------------------------------
@dataclass
class _State:
    """What the run has learnt so far; turned into a result document whatever happens."""

    run_id: str
    started_at: str
    device: dict[str, Any]
    job: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_done: int = 0
    samples_ms: list[float] = field(default_factory=list)
    measured_s: float | None = None
    energy: dict[str, Any] | None = None
    thermal_before: int | None = None
    thermal_after: int | None = None
    golden: dict[str, Any] | None = None
    budget_trace: dict[str, Any] | None = None


def _device_section(device_info: dict[str, Any]) -> dict[str, Any]:
    dev = {k: device_info[k] for k in _DEVICE_KEYS if k in device_info}
    dev.setdefault("model", "simulated phone")
    dev.setdefault("manufacturer", "")
    dev.setdefault("android_version", "")
    dev.setdefault("sdk_int", 1)
    dev.setdefault("soc", None)
    dev.setdefault("abi", "")
    dev.setdefault("serial", None)
    dev["simulated"] = True
    return dev


def _slowdown(device_info: dict[str, Any]) -> float:
    """Latency multiplier from the phone's faults (1.0 = none): sleep (m - 1) x each inference."""
    for key in ("latency_multiplier", "slowdown", "slow_factor"):
        if device_info.get(key) is not None:
            value = float(device_info[key])
            if value <= 0:
                raise ValueError(f"device_info[{key!r}] must be > 0, got {value}")
            return value
    return 1.0


def _fallback_run_id(job_device_path: str) -> str:
    tag = hashlib.sha256(job_device_path.encode()).hexdigest()[:8]
    return f"invalid-job-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{tag}"


def _read_job(job_device_path: str, fs) -> dict[str, Any]:
    path = fs.host_path(job_device_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _Stop("invalid_job", f"job file {job_device_path} does not exist on the device") from None
    except OSError as err:
        raise _Stop("invalid_job", f"job file {job_device_path} cannot be read: {err.strerror}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _Stop("invalid_job", f"job file {job_device_path} is not JSON: {err}") from None
    return doc


class _Runner:
    """One loaded model behind one ``run(x) -> np.ndarray`` call."""

    def __init__(self, job: dict[str, Any], model_path: Path) -> None:
        self.job = job
        self.format = job["format"]
        threads = job["runtime"]["threads"]
        if self.format == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
            inp = self.session.get_inputs()[0]
            self.input_name = inp.name
            self.input_shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
            self.input_dtype = _ORT_TYPES.get(inp.type, np.float32)
            self.runtime = {"name": "onnxruntime", "version": ort.__version__, "threads": threads,
                            "cores": _usable_cores(),
                            "delegate": "cpu"}
        else:
            from ai_edge_litert.interpreter import Interpreter

            self.interp = Interpreter(model_path=str(model_path), num_threads=threads)
            self.interp.allocate_tensors()
            detail = self.interp.get_input_details()[0]
            self.input_index = detail["index"]
            self.output_index = self.interp.get_output_details()[0]["index"]
            self.input_shape = [int(d) if d > 0 else 1 for d in detail["shape"]]
            self.input_dtype = detail["dtype"]
            try:
                from importlib.metadata import version

                rt_version = version("ai-edge-litert")
            except Exception:  # noqa: BLE001 - version is informative only
                rt_version = None
            # the host interpreter runs on the CPU (XNNPACK); GPU/NNAPI delegates exist only on phones
            delegate = "xnnpack" if job["runtime"]["delegate"] == "xnnpack" else "cpu"
            self.runtime = {"name": "litert", "version": rt_version, "threads": threads, "delegate": delegate,
                            "cores": _usable_cores()}

    def example_input(self, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if np.issubdtype(self.input_dtype, np.floating):
            return rng.standard_normal(self.input_shape).astype(self.input_dtype)
        return rng.integers(0, 10, size=self.input_shape).astype(self.input_dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.format == "onnx":
            return self.session.run(None, {self.input_name: x})[0]
        self.interp.set_tensor(self.input_index, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.output_index)


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_model_file(job: dict[str, Any], fs) -> Path:
    path = fs.host_path(job["model_file"])
    if not path.is_file():
        raise _Stop("load_failed", f"model file {job['model_file']} does not exist on the device")
    size = path.stat().st_size
    if size != job["model_bytes"]:
        raise _Stop("load_failed", f"model file {job['model_file']} is {size} bytes but the job says "
                                   f"{job['model_bytes']} (truncated or wrong file); push it again")
    digest = _sha256_file(path)
    if digest != job["model_sha256"]:
        raise _Stop("load_failed", f"model file {job['model_file']} has sha256 {digest[:12]}... but the job "
                                   f"says {job['model_sha256'][:12]}... (corrupt or wrong file); push it again")
    return path


def _load_npy(device_path: str, fs, what: str) -> np.ndarray:
    try:
        return np.load(fs.host_path(device_path), allow_pickle=False)
    except FileNotFoundError:
        raise _Stop("invalid_job", f"{what} {device_path} does not exist on the device") from None
    except (ValueError, OSError) as err:
        raise _Stop("invalid_job", f"{what} {device_path} is not a readable .npy file: {err}") from None


def _usable_cores() -> int:
    """Cores this simulated app may run on (the host process's CPU affinity), recorded in the result."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _timed(runner: _Runner, x: np.ndarray, battery, slowdown: float, threads: int) -> tuple[float, np.ndarray]:
    """One inference: wall ms (including the fault's slowdown), CPU time accounted into the battery."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = runner.run(x)
    wall = time.perf_counter() - t0
    cpu = min(max(time.process_time() - cpu0, 0.0), wall * threads)
    if slowdown != 1.0:
        extra = wall * (slowdown - 1.0)
        if extra > 0:
            time.sleep(extra)
            # a slower phone does the same work at a lower clock: the CPU is busy for longer
            cpu *= slowdown
    total = time.perf_counter() - t0
    battery.add_cpu_work(cpu, total)
    return total * 1000.0, out


def _energy(job: dict[str, Any], idle: list[tuple[float, Any]], window: list[tuple[float, Any]],
            runs: int) -> dict[str, Any]:
    e = job["energy"]
    base = {
        "method": "simulated", "sample_interval_ms": e["sample_interval_ms"], "samples": [],
        "window_s": None, "idle_baseline_s": e["idle_baseline_s"], "idle_power_mw": None, "total_mj": None,
        "idle_mj": None, "net_mj": None, "per_inference_mj": None, "current_unit": "ua",
        "current_sign": "negative_is_discharge", "rails": None,
        "note": "simulated: the model ran on the host CPU; power comes from the simulated phone's battery "
                "model (idle power + CPU time x per-core power), read through its fuel gauge",
    }
    if any(getattr(s, "charging", False) for _, s in idle + window):
        base.update(method="none", note="the simulated phone was charging: battery readings say nothing about "
                                        "the energy used; unplug (adb over Wi-Fi) and run again")
        return base
    if len(window) < 2:
        base.update(method="none", note="fewer than two battery samples in the measured window")
        return base
    t0 = window[0][0]
    times = [t - t0 for t, _ in window]
    powers = [power_mw(s.current_ua, s.voltage_mv) for _, s in window]
    step = max(1, len(window) // MAX_ENERGY_SAMPLES)
    base["samples"] = [
        {"t_ms": round(times[i] * 1000.0, 3), "current_ua": window[i][1].current_ua,
         "voltage_mv": window[i][1].voltage_mv}
        for i in range(0, len(window), step)
    ]
    window_s = times[-1]
    total = trapezoid_mj(times, powers)
    idle_mw = _mean_power_mw(idle)
    base.update(window_s=window_s, total_mj=total)
    if idle_mw is None:
        base["note"] += "; no idle baseline (idle_baseline_s is 0): net figures are not given"
        return base
    idle_mj = idle_mw * window_s
    net = total - idle_mj
    base.update(idle_power_mw=idle_mw, idle_mj=idle_mj, net_mj=net, per_inference_mj=net / runs if runs else None)
    return base


def _result(state: _State, status: str, error: str | None) -> dict[str, Any]:
    latency = None
    if state.samples_ms and status not in ("invalid_job", "load_failed"):
        latency = {
            "init_ms": state.init_ms or 0.0, "first_ms": state.first_ms or 0.0, "warmup_runs": state.warmup_done,
            "runs": len(state.samples_ms), "samples_ms": state.samples_ms, **latency_stats(state.samples_ms),
            "measured_s": state.measured_s or 0.0,
        }
    job = state.job or {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "schema_version": 1,
        "run_id": state.run_id,
        "run_set": job.get("run_set"),
        "status": status,
        "started_at": state.started_at,
        "finished_at": utc_now_iso(),
        "app_version": APP_VERSION,
        "device": state.device,
        "model": state.model,
        "runtime": state.runtime,
        "latency": latency,
        "energy": state.energy if latency is not None else None,
        "thermal": {"before": state.thermal_before, "after": state.thermal_after},
        "peak_memory_bytes": peak if state.runtime else None,
        "golden": state.golden,
        "error": error,
        "budget_trace": state.budget_trace if latency is not None else None,
    }


def _measure(state: _State, job: dict[str, Any], fs, battery, slowdown: float) -> None:
    e = job["energy"]
    threads = job["runtime"]["threads"]
    interval_s = e["sample_interval_ms"] / 1000.0
    state.model = {"name": job["model_name"], "file": job["model_file"], "format": job["format"],
                   "mode": job["mode"], "bytes": job["model_bytes"], "sha256": job["model_sha256"]}
    planned = {"onnx": "onnxruntime", "tflite": "litert"}[job["format"]]
    state.runtime = {"name": planned, "version": None, "threads": threads, "delegate": job["runtime"]["delegate"]}

    # idle baseline first, with nothing of ours running
    idle: list[tuple[float, Any]] = []
    if e["idle_baseline_s"] > 0:
        with _Sampler(battery, interval_s) as sampler:
            time.sleep(e["idle_baseline_s"])
        idle = sampler.samples

    model_path = _check_model_file(job, fs)
    golden = job.get("golden")
    gin = gout = None
    if golden:
        gin = _load_npy(golden["input_file"], fs, "golden input")
        gout = _load_npy(golden["output_file"], fs, "golden output")

    t0 = time.perf_counter()
    try:
        runner = _Runner(job, model_path)
    except ImportError as err:
        raise _Stop("crashed", f"the {planned} runtime is not installed on the host: {err}") from None
    except Exception as err:  # noqa: BLE001 - any load failure is reported, never raised
        raise _Stop("load_failed", f"{planned} could not load {job['model_file']}: {type(err).__name__}: {err}"
                    ) from None
    state.init_ms = (time.perf_counter() - t0) * 1000.0
    state.runtime = runner.runtime

    x = runner.example_input() if gin is None else gin.astype(runner.input_dtype, copy=False)
    try:
        state.first_ms, out = _timed(runner, x, battery, slowdown, threads)
    except Exception as err:  # noqa: BLE001
        raise _Stop("crashed", f"first inference failed: {type(err).__name__}: {err}") from None
    if golden:
        atol, rtol = golden["atol"], golden["rtol"]
        if out.size != gout.size:
            raise _Stop("invalid_job", f"golden output {golden['output_file']} holds {gout.size} values but the "
                                       f"model gives {out.size} ({list(out.shape)}): the golden files do not "
                                       "belong to this model; rebuild the bundle")
        out = out.reshape(gout.shape)
        diff = float(np.max(np.abs(out.astype(np.float64) - gout.astype(np.float64)))) if out.size else 0.0
        passed = bool(np.allclose(out, gout, atol=atol, rtol=rtol))
        if not np.isfinite(diff):  # NaN/Inf in the output: JSON has no NaN, report the largest number
            diff = sys.float_info.max
            raise_note = "the model output holds NaN or Inf; "
        else:
            raise_note = ""
        state.golden = {"checked": True, "max_abs_diff": diff, "atol": atol, "rtol": rtol, "passed": passed}
        if not passed:
            raise _Stop("golden_mismatch", f"{raise_note}golden output differs: max abs diff {diff:.6g} > atol {atol:g} "
                                           f"(rtol {rtol:g}); timing skipped")

    if job.get("budget_trace"):
        _run_trace(state, job, fs, battery, slowdown, runner, x, idle)
        return

    for _ in range(job["warmup_runs"]):
        _timed(runner, x, battery, slowdown, threads)
        state.warmup_done += 1

    deadline = job.get("timeout_s")
    job_t0 = time.monotonic()
    with _Sampler(battery, interval_s) as sampler:
        loop_t0 = time.perf_counter()
        stop: _Stop | None = None
        while True:
            ms, _ = _timed(runner, x, battery, slowdown, threads)
            state.samples_ms.append(ms)
            elapsed = time.perf_counter() - loop_t0
            if len(state.samples_ms) >= job["measured_runs"] and elapsed >= job["min_duration_s"]:
                break
            if sampler.max_thermal >= THERMAL_ABORT_STATUS:
                stop = _Stop("thermal_abort", f"thermal status reached {sampler.max_thermal} after "
                                              f"{len(state.samples_ms)} runs; stopped to protect the figures")
                break
            if deadline is not None and time.monotonic() - job_t0 > deadline:
                stop = _Stop("timeout", f"the job's timeout_s {deadline} passed after {len(state.samples_ms)} "
                                        "measured runs")
                break
        state.measured_s = time.perf_counter() - loop_t0
    state.energy = _energy(job, idle, sampler.samples, len(state.samples_ms))
    if stop is not None:
        raise stop


MAX_TRACE_FRAMES_KEPT = 10000  # result schema: budget_trace.per_frame maxItems


def _trace_runners(job: dict[str, Any], fs, main_runner: _Runner) -> list[_Runner]:
    """One loaded runner per configuration (sha256 checked first); the main model file is reused."""
    runners: list[_Runner] = []
    loaded: dict[str, _Runner] = {job["model_file"]: main_runner}
    for cfg in job["budget_trace"]["configurations"]:
        if cfg["file"] in loaded:
            runners.append(loaded[cfg["file"]])
            continue
        path = fs.host_path(cfg["file"])
        if not path.is_file():
            raise _Stop("load_failed", f"budget trace configuration {cfg['name']!r}: file {cfg['file']} does not "
                                       "exist on the device; push every configuration bundle")
        digest = _sha256_file(path)
        if digest != cfg["sha256"]:
            raise _Stop("load_failed", f"budget trace configuration {cfg['name']!r}: file {cfg['file']} has sha256 "
                                       f"{digest[:12]}... but the job says {cfg['sha256'][:12]}... (corrupt or "
                                       "wrong file); push it again")
        fmt = "tflite" if cfg["file"].endswith(".tflite") else "onnx" if cfg["file"].endswith(".onnx") \
            else job["format"]
        try:
            runner = _Runner(dict(job, format=fmt), path)
        except ImportError as err:
            raise _Stop("crashed", f"the runtime for {cfg['file']} is not installed on the host: {err}") from None
        except Exception as err:  # noqa: BLE001 - any load failure is reported, never raised
            raise _Stop("load_failed", f"budget trace configuration {cfg['name']!r}: could not load {cfg['file']}: "
                                       f"{type(err).__name__}: {err}") from None
        loaded[cfg["file"]] = runner
        runners.append(runner)
    return runners


def _run_trace(state: _State, job: dict[str, Any], fs, battery, slowdown: float, main_runner: _Runner,
               main_x: np.ndarray, idle: list[tuple[float, Any]]) -> None:
    """The measured loop of a budget-trace job (see the module docstring)."""
    from pipeline.dynamic.selector import FrontEntry, select_for_budget  # standard library only

    trace = job["budget_trace"]
    threads = job["runtime"]["threads"]
    budgets = [float(b) for b in trace["budgets_ms"]]
    frames = int(trace.get("frames") or len(budgets))
    front = [FrontEntry(c["name"], float(c["cost_ms"]), float(c["accuracy"]), c["file"])
             for c in trace["configurations"]]
    runners = _trace_runners(job, fs, main_runner)
    inputs = []
    for runner in runners:
        x = main_x if list(main_x.shape) == list(runner.input_shape) and main_x.dtype == runner.input_dtype \
            else runner.example_input()
        inputs.append(x)
        for _ in range(job["warmup_runs"]):
            _timed(runner, x, battery, slowdown, threads)
    state.warmup_done = job["warmup_runs"]

    interval_s = job["energy"]["sample_interval_ms"] / 1000.0
    deadline = job.get("timeout_s")
    job_t0 = time.monotonic()
    per_frame: list[dict[str, Any]] = []
    counts = {c.name: 0 for c in front}
    misses = nothing_fit = switches = 0
    accuracy_sum = 0.0
    previous = None
    stop: _Stop | None = None
    with _Sampler(battery, interval_s) as sampler:
        loop_t0 = time.perf_counter()
        for i in range(frames):
            budget = budgets[i % len(budgets)]
            choice = select_for_budget(front, budget)
            ms, _ = _timed(runners[choice.index], inputs[choice.index], battery, slowdown, threads)
            state.samples_ms.append(ms)
            missed = ms > budget
            misses += missed
            nothing_fit += not choice.fits
            switches += previous is not None and previous != choice.index
            previous = choice.index
            accuracy_sum += choice.entry.accuracy
            counts[choice.entry.name] += 1
            if len(per_frame) < MAX_TRACE_FRAMES_KEPT:
                per_frame.append({"budget_ms": budget, "config": choice.entry.name, "latency_ms": ms,
                                  "missed": missed})
            if sampler.max_thermal >= THERMAL_ABORT_STATUS:
                stop = _Stop("thermal_abort", f"thermal status reached {sampler.max_thermal} after "
                                              f"{len(state.samples_ms)} of {frames} trace frames; stopped")
                break
            if deadline is not None and time.monotonic() - job_t0 > deadline:
                stop = _Stop("timeout", f"the job's timeout_s {deadline} passed after {len(state.samples_ms)} "
                                        f"of {frames} trace frames")
                break
        state.measured_s = time.perf_counter() - loop_t0
    done = len(state.samples_ms)
    state.energy = _energy(job, idle, sampler.samples, done)
    stats = latency_stats(state.samples_ms)
    state.budget_trace = {
        "frames": done, "deadline_misses": int(misses), "nothing_fit": int(nothing_fit), "switches": int(switches),
        "mean_accuracy": accuracy_sum / done, "latency_mean_ms": stats["mean_ms"], "latency_p90_ms": stats["p90_ms"],
        "frames_per_config": counts, "per_frame_truncated": done > len(per_frame), "per_frame": per_frame,
    }
    if stop is not None:
        raise stop


def _write_atomic(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def post_result(doc: dict[str, Any], collector_url: str, token: str | None = None, *,
                attempts: int = POST_ATTEMPTS) -> tuple[bool, str]:
    """POST to ``<collector_url>/api/v1/results`` with retries; (accepted, last message). Never raises."""
    import httpx

    url = collector_url.rstrip("/") + "/api/v1/results"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    message = ""
    for attempt in range(attempts):
        try:
            resp = httpx.post(url, json=doc, headers=headers, timeout=10.0)
        except httpx.HTTPError as err:
            message = f"POST {url} failed: {type(err).__name__}: {err}"
        else:
            if resp.status_code in (200, 201):
                return True, f"POST {url}: {resp.status_code}"
            message = f"POST {url}: {resp.status_code} {resp.text[:500]}"
            if resp.status_code not in (408, 429) and resp.status_code < 500:
                return False, message  # the collector refused the document: retrying will not help
        if attempt + 1 < attempts:
            time.sleep(POST_BACKOFF_S[min(attempt, len(POST_BACKOFF_S) - 1)])
    return False, message


def run_job(job_device_path: str, *, fs, device_info: dict[str, Any], battery) -> dict[str, Any]:
    """Run the job at ``job_device_path`` on the simulated phone; returns the result document.

    Always writes ``<app files>/results/<run_id>.json`` (or the job's ``result_file``) through
    ``fs`` and POSTs it to the job's ``collector_url`` when present; a failed POST keeps the file.
    """
    state = _State(run_id=_fallback_run_id(job_device_path), started_at=utc_now_iso(),
                   device=_device_section(device_info))
    status, error = "ok", None
    try:
        state.thermal_before = int(battery.snapshot().thermal_status)
        doc = _read_job(job_device_path, fs)
        if isinstance(doc, dict) and isinstance(doc.get("run_id"), str) and _RUN_ID.match(doc["run_id"]):
            state.run_id = doc["run_id"]
        problems = validate_job(doc)
        if problems:
            raise _Stop("invalid_job", f"job {job_device_path}: " + "; ".join(problems[:10]))
        state.job = doc
        _measure(state, doc, fs, battery, _slowdown(device_info))
    except _Stop as stop:
        status, error = stop.status, stop.error
    except Exception as err:  # noqa: BLE001 - the app never exits without a result
        status = "crashed"
        error = f"{type(err).__name__}: {err}\n" + "".join(traceback.format_exc(limit=8))[-4000:]
    try:
        state.thermal_after = int(battery.snapshot().thermal_status)
    except Exception:  # noqa: BLE001
        state.thermal_after = None
    if status != "invalid_job" and state.model is None:
        status, error = "invalid_job", error or "job could not be read"
    if status == "invalid_job":
        state.model = state.runtime = None
    result = _result(state, status, error)

    job = state.job or {}
    result_device_path = job.get("result_file") or f"{APP_FILES_DIR}/results/{state.run_id}.json"
    _write_atomic(fs.host_path(result_device_path), result)
    if job.get("collector_url"):
        ok, message = post_result(result, job["collector_url"], job.get("collector_token"))
        (log.info if ok else log.warning)("run %s: %s", state.run_id, message)
    return result
