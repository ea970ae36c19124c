"""The simulated phone's benchmark app, called directly with real models and a real collector."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from device_runner.sim.battery import BatteryModel
from device_runner.sim.benchmark_app import APP_FILES_DIR, latency_stats, run_job, trapezoid_mj
from results.collector import start_collector_in_thread
from results.schema import validate_result

BUNDLE = "/data/local/tmp/vitpalette/job1"


DEVICE_INFO = {"model": "Pixel 8", "manufacturer": "Google", "android_version": "15", "sdk_int": 35,
               "soc": "Tensor G3", "abi": "arm64-v8a", "serial": "127.0.0.1:5555", "simulated": True, "cores": 9,
               "latency_multiplier": 1.0}


def mlp_onnx(in_f: int = 16, hidden: int = 32, out_f: int = 10, seed: int = 0) -> tuple[bytes, callable]:
    """A two-layer MLP as ONNX bytes, and the same function in numpy."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((in_f, hidden)) / np.sqrt(in_f)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, out_f)) / np.sqrt(hidden)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_f])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_f])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), lambda x: np.maximum(x @ w1, 0) @ w2


def fc_tflite(in_f: int = 16, out_f: int = 10, seed: int = 1) -> tuple[bytes, callable]:
    """One FULLY_CONNECTED op as a TFLite flatbuffer built with the schema's object API (no TF/torch)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((out_f, in_f)).astype(np.float32)
    b = rng.standard_normal(out_f).astype(np.float32)
    model = s.ModelT()
    model.version = 3
    buffers = []
    for arr in (None, w, b, None, None):
        buf = s.BufferT()
        if arr is not None:
            buf.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        buffers.append(buf)
    model.buffers = buffers

    def tensor(name, shape, buffer):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), np.array(shape, dtype=np.int32), s.TensorType.FLOAT32, buffer
        return t

    sub = s.SubGraphT()
    sub.tensors = [tensor("x", [1, in_f], 3), tensor("w", [out_f, in_f], 1), tensor("b", [out_f], 2),
                   tensor("y", [1, out_f], 4)]
    sub.inputs, sub.outputs = np.array([0], dtype=np.int32), np.array([3], dtype=np.int32)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1, 2], dtype=np.int32), np.array([3], dtype=np.int32)
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()
    sub.operators = [op]
    model.subgraphs = [sub]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), lambda x: x @ w.T + b


def put_bundle(fs, model_bytes: bytes, fn, *, fmt: str = "onnx", run_id: str = "run-1",
               golden: bool = True, job_bytes: bytes | None = None, **job_changes) -> str:
    """Push model, golden files and job.json into the device tree; returns the job's device path."""
    model_file = f"{BUNDLE}/model.{fmt}"
    fs.put(model_file, model_bytes)
    job = {
        "schema_version": 1, "run_id": run_id, "model_name": "test-mlp", "model_file": model_file,
        "format": fmt, "mode": "dense", "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "model_bytes": len(model_bytes), "runtime": {"threads": 1, "delegate": "cpu"},
        "warmup_runs": 2, "measured_runs": 20, "min_duration_s": 0.3, "cooldown_s": 0,
        "energy": {"sample_interval_ms": 50, "idle_baseline_s": 0.2},
    }
    if golden:
        x = np.random.default_rng(7).standard_normal((1, 16)).astype(np.float32)
        for name, arr in (("golden_input.npy", x), ("golden_output.npy", fn(x).astype(np.float32))):
            path = fs.host_path(f"{BUNDLE}/{name}")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, arr)
        job["golden"] = {"input_file": f"{BUNDLE}/golden_input.npy", "output_file": f"{BUNDLE}/golden_output.npy",
                         "atol": 1e-4, "rtol": 1e-4}
    for key, value in job_changes.items():
        job[key] = value
    fs.put(f"{BUNDLE}/job.json", job_bytes if job_bytes is not None else json.dumps(job).encode())
    return f"{BUNDLE}/job.json"


def stored_file(fs, run_id: str) -> dict:
    return json.loads(fs.host_path(f"{APP_FILES_DIR}/results/{run_id}.json").read_text())




@pytest.fixture
def collector(tmp_path):
    with start_collector_in_thread(f"sqlite:///{tmp_path / 'runs.db'}") as handle:
        yield handle


def test_onnx_run_reaches_the_collector_and_validates(fs, collector):
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="onnx-ok-1", collector_url=collector.url,
                     runtime={"threads": 2, "delegate": "cpu"}, run_set="night-a")
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert validate_result(result) == []
    assert result["status"] == "ok" and result["error"] is None
    assert result["device"]["simulated"] is True and result["device"]["model"] == "Pixel 8"
    assert "latency_multiplier" not in result["device"]
    assert result["runtime"]["name"] == "onnxruntime" and result["runtime"]["threads"] == 2
    assert result["run_set"] == "night-a" and result["model"]["mode"] == "dense"
    lat = result["latency"]
    assert lat["runs"] >= 20 and lat["measured_s"] >= 0.3 and lat["warmup_runs"] == 2
    assert lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert result["golden"]["passed"] is True and result["golden"]["max_abs_diff"] < 1e-4
    energy = result["energy"]
    assert energy["method"] == "simulated" and "simulated" in energy["note"]
    assert len(energy["samples"]) >= 3 and energy["idle_power_mw"] > 0
    assert energy["net_mj"] > 0 and energy["per_inference_mj"] == pytest.approx(energy["net_mj"] / lat["runs"])
    assert energy["total_mj"] == pytest.approx(energy["idle_mj"] + energy["net_mj"])
    assert result["thermal"]["before"] == 0 and result["peak_memory_bytes"] > 0
    # the same document is on the device and in the collector
    assert stored_file(fs, "onnx-ok-1") == result
    assert httpx.get(f"{collector.url}/api/v1/runs/onnx-ok-1").json() == result


def test_tflite_run_without_golden_or_collector(fs):
    data, fn = fc_tflite()
    job = put_bundle(fs, data, fn, fmt="tflite", run_id="tfl-ok-1", golden=False,
                     runtime={"threads": 2, "delegate": "xnnpack"}, mode="palette")
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert validate_result(result) == [] and result["status"] == "ok", result["error"]
    assert result["runtime"]["name"] == "litert" and result["runtime"]["threads"] == 2
    assert result["golden"] is None and result["model"]["format"] == "tflite"
    assert stored_file(fs, "tfl-ok-1") == result


def test_tflite_golden_check_runs_on_litert(fs):
    data, fn = fc_tflite()
    job = put_bundle(fs, data, fn, fmt="tflite", run_id="tfl-golden", measured_runs=3, min_duration_s=0)
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "ok" and result["golden"]["passed"] is True


def test_truncated_model_is_load_failed_and_still_posted(fs, collector):
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="trunc-1", collector_url=collector.url)
    fs.put(f"{BUNDLE}/model.onnx", data[: len(data) // 2])  # the push broke off half-way
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "load_failed" and result["latency"] is None
    assert "bytes" in result["error"] and "truncated" in result["error"]
    assert validate_result(result) == []
    assert httpx.get(f"{collector.url}/api/v1/runs/trunc-1").json()["status"] == "load_failed"


def test_corrupt_model_that_matches_the_job_fails_in_the_runtime(fs):
    garbage = b"\x08\x07garbage-not-a-protobuf" * 50
    job = put_bundle(fs, garbage, None, run_id="corrupt-1", golden=False)
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "load_failed" and "onnxruntime could not load" in result["error"]
    assert validate_result(result) == [] and stored_file(fs, "corrupt-1")["status"] == "load_failed"


def test_golden_mismatch_names_the_difference(fs):
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, lambda x: fn(x) + 0.5, run_id="golden-bad")
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "golden_mismatch" and result["latency"] is None
    assert result["golden"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-4)
    assert "0.5" in result["error"] and validate_result(result) == []


@pytest.mark.parametrize(
    ("job_bytes", "needle"),
    [(b"{not json", "not JSON"), (json.dumps({"schema_version": 1, "run_id": "half-job"}).encode(), "required")],
)
def test_unreadable_jobs_get_an_invalid_job_result(fs, job_bytes, needle):
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, job_bytes=job_bytes)
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "invalid_job" and needle in result["error"]
    assert result["model"] is None and validate_result(result) == []
    assert stored_file(fs, result["run_id"]) == result
    if b"half-job" in job_bytes:
        assert result["run_id"] == "half-job"


def test_invalid_values_and_missing_job_file(fs):
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="threads-0", runtime={"threads": 0, "delegate": "cpu"})
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "invalid_job" and "runtime/threads" in result["error"]
    missing = run_job("/data/local/tmp/nothing/job.json", fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert missing["status"] == "invalid_job" and "does not exist" in missing["error"]
    assert validate_result(missing) == [] and validate_result(result) == []


def test_unreachable_collector_keeps_the_file(fs, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="no-collector", collector_url=f"http://127.0.0.1:{port}",
                     measured_runs=2, min_duration_s=0, energy={"sample_interval_ms": 20, "idle_baseline_s": 0})
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "ok" and stored_file(fs, "no-collector") == result
    # without an idle baseline the net figures are not invented
    assert result["energy"]["per_inference_mj"] is None and "no idle baseline" in result["energy"]["note"]


def test_slowdown_fault_makes_inference_slower(fs):
    data, fn = mlp_onnx(in_f=16, hidden=1024)
    job = put_bundle(fs, data, fn, run_id="fast", measured_runs=30, min_duration_s=0, golden=False)
    fast = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    job = put_bundle(fs, data, fn, run_id="slow", measured_runs=30, min_duration_s=0, golden=False)
    slow = run_job(job, fs=fs, device_info={**DEVICE_INFO, "latency_multiplier": 4.0}, battery=BatteryModel())
    assert slow["latency"]["median_ms"] > 2.0 * fast["latency"]["median_ms"]


def test_charging_phone_reports_no_energy_figure(fs):
    class Charging:
        charging = True

    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="charging", measured_runs=3, min_duration_s=0.1)
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel(faults=lambda: Charging()))
    assert result["status"] == "ok" and result["energy"]["method"] == "none"
    assert "charging" in result["energy"]["note"] and validate_result(result) == []


def test_statistics_and_integration_helpers():
    stats = latency_stats([float(v) for v in range(1, 21)])
    assert stats["median_ms"] == 10.5 and stats["min_ms"] == 1 and stats["max_ms"] == 20
    assert stats["p90_ms"] == pytest.approx(18.1) and stats["trimmed_mean_ms"] == pytest.approx(10.5)
    assert stats["std_ms"] == pytest.approx(np.std(np.arange(1, 21)))
    assert trapezoid_mj([0.0, 1.0, 2.0], [100.0, 200.0, 100.0]) == pytest.approx(300.0)


def test_app_module_imports_no_torch():
    code = ("import sys; import device_runner.sim.benchmark_app; "
            "bad = [m for m in ('torch', 'tensorflow', 'converters', 'onnxruntime') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout + out.stderr


def test_hot_phone_stops_with_thermal_abort_and_keeps_what_it_measured(fs):
    class Hot:
        thermal_status = 3
        charging = False

    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="hot", measured_runs=100000, min_duration_s=30,
                     energy={"sample_interval_ms": 20, "idle_baseline_s": 0.05})
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel(faults=lambda: Hot()))
    assert result["status"] == "thermal_abort" and "thermal status reached 3" in result["error"]
    assert result["thermal"] == {"before": 3, "after": 3}
    assert 1 <= result["latency"]["runs"] < 100000 and validate_result(result) == []


def test_job_timeout_stops_the_loop(fs):
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="slow-job", measured_runs=10**6, min_duration_s=60, timeout_s=0.3,
                     energy={"sample_interval_ms": 50, "idle_baseline_s": 0})
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "timeout" and "timeout_s" in result["error"]
    assert result["latency"]["measured_s"] < 5 and validate_result(result) == []


def test_inference_that_fails_is_crashed_with_the_error_text(fs):
    data, fn = mlp_onnx()
    job = put_bundle(fs, data, fn, run_id="bad-input")
    np.save(fs.host_path(f"{BUNDLE}/golden_input.npy"), np.zeros((1, 8), dtype=np.float32))  # wrong width
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "crashed" and "first inference failed" in result["error"]
    assert result["latency"] is None and validate_result(result) == []


def test_nan_in_the_comparison_still_gives_a_json_result(fs):
    data, fn = mlp_onnx()

    def with_nan(x):
        y = fn(x).copy()
        y[0, 0] = np.nan
        return y

    job = put_bundle(fs, data, with_nan, run_id="nan-golden")
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "golden_mismatch" and "NaN" in result["error"]
    assert json.loads(json.dumps(result, allow_nan=False)) == stored_file(fs, "nan-golden")
