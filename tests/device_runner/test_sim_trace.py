"""Budget-trace jobs on the simulated app: the per-frame choice follows the selector, counts add up.

Two ONNX files of different cost (a MatMul chain of 2 and of 24 layers) stand for two
configurations of a dynamic model. Which configuration runs on each frame is decided by the
budgets alone (the selector rule), so frames_per_config, switches and nothing_fit are checked
exactly against ``select_for_budget``; deadline misses depend on timing and are checked against
the per-frame records, plus the two cases timing cannot change (a budget of 1e-6 ms is always
missed, one of 100 s never).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from device_runner.sim.battery import BatteryModel
from device_runner.sim.benchmark_app import APP_FILES_DIR, run_job
from pipeline.dynamic.selector import select_for_budget
from results.schema import validate_job, validate_result

ROOT = "/data/local/tmp/vitpalette/trace1"
DEVICE_INFO = {"model": "Pixel 8", "manufacturer": "Google", "android_version": "15", "sdk_int": 35,
               "soc": "Tensor G3", "abi": "arm64-v8a", "serial": "127.0.0.1:5555", "simulated": True, "cores": 9}
NEVER_FITS_MS = 1e-6
ALWAYS_FITS_MS = 100_000.0


def matmul_chain(layers: int, width: int = 64, seed: int = 0) -> tuple[bytes, callable]:
    """``layers`` MatMul+Tanh pairs as ONNX bytes, and the same function in numpy."""
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for _ in range(layers)]
    nodes, inits, prev = [], [], "x"
    for i, w in enumerate(ws):
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"y{i}" if i < layers - 1 else "y"])]
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, f"chain{layers}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)

    def fn(x):
        for w in ws:
            x = np.tanh(x @ w)
        return x
    return model.SerializeToString(), fn


def put_trace_job(fs, budgets_ms: list[float], *, run_id: str = "trace-1", frames: int | None = None,
                  corrupt: str | None = None, **job_changes) -> tuple[str, list[dict]]:
    """Two configurations (full = 24 layers, light = 2 layers) pushed, job written; (job path, configs)."""
    configs = []
    for name, layers, cost_ms, acc in (("full", 24, 5.0, 0.9), ("light", 2, 0.5, 0.6)):
        data, fn = matmul_chain(layers, seed=layers)
        file = f"{ROOT}/{name}/model.onnx"
        fs.put(file, data)
        configs.append({"name": name, "file": file, "sha256": hashlib.sha256(data).hexdigest(),
                        "cost_ms": cost_ms, "accuracy": acc, "_bytes": data, "_fn": fn})
    full = configs[0]
    x = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)
    for fname, arr in (("golden_input.npy", x), ("golden_output.npy", full["_fn"](x).astype(np.float32))):
        path = fs.host_path(f"{ROOT}/full/{fname}")
        np.save(path, arr)
    section = {"configurations": [{k: v for k, v in c.items() if not k.startswith("_")} for c in configs],
               "budgets_ms": budgets_ms}
    if frames is not None:
        section["frames"] = frames
    job = {
        "schema_version": 1, "run_id": run_id, "model_name": "chain", "model_file": full["file"],
        "format": "onnx", "mode": "dense", "model_sha256": full["sha256"], "model_bytes": len(full["_bytes"]),
        "runtime": {"threads": 1, "delegate": "cpu"}, "warmup_runs": 2, "measured_runs": 1,
        "min_duration_s": 0, "cooldown_s": 0, "energy": {"sample_interval_ms": 20, "idle_baseline_s": 0.1},
        "golden": {"input_file": f"{ROOT}/full/golden_input.npy", "output_file": f"{ROOT}/full/golden_output.npy",
                   "atol": 1e-4, "rtol": 1e-4},
        "budget_trace": section, **job_changes,
    }
    assert validate_job(job) == []
    fs.put(f"{ROOT}/job.json", json.dumps(job).encode())
    if corrupt:
        fs.put(next(c["file"] for c in configs if c["name"] == corrupt), b"not the pushed file")
    return f"{ROOT}/job.json", section["configurations"]


def _expected(configs: list[dict], budgets: list[float], frames: int) -> list:
    return [select_for_budget(configs, budgets[i % len(budgets)]) for i in range(frames)]


def test_trace_follows_the_selector_and_counts_add_up(fs):
    # the cheap configuration is the only one that fits half the time; 1e-6 ms fits nothing
    budgets = [ALWAYS_FITS_MS, 1.0, ALWAYS_FITS_MS, 1.0, NEVER_FITS_MS, 1.0, ALWAYS_FITS_MS, ALWAYS_FITS_MS]
    job, configs = put_trace_job(fs, budgets)
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "ok", result["error"]
    assert validate_result(result) == []
    bt = result["budget_trace"]
    choices = _expected(configs, budgets, len(budgets))
    names = [c.entry.name for c in choices]
    assert [f["config"] for f in bt["per_frame"]] == names
    assert [f["budget_ms"] for f in bt["per_frame"]] == budgets
    assert bt["frames"] == len(budgets) == result["latency"]["runs"]
    assert bt["frames_per_config"] == {"full": names.count("full"), "light": names.count("light")}
    assert bt["switches"] == sum(a != b for a, b in zip(names, names[1:], strict=False))
    assert bt["nothing_fit"] == sum(not c.fits for c in choices) == 1
    assert bt["mean_accuracy"] == pytest.approx(np.mean([c.entry.accuracy for c in choices]))
    # misses are latency > budget, frame by frame; the latency section holds the same samples
    assert [f["latency_ms"] for f in bt["per_frame"]] == result["latency"]["samples_ms"]
    assert all(f["missed"] == (f["latency_ms"] > f["budget_ms"]) for f in bt["per_frame"])
    assert bt["deadline_misses"] == sum(f["missed"] for f in bt["per_frame"])
    assert all(f["missed"] for f in bt["per_frame"] if f["budget_ms"] == NEVER_FITS_MS)
    assert not any(f["missed"] for f in bt["per_frame"] if f["budget_ms"] == ALWAYS_FITS_MS)
    assert bt["latency_mean_ms"] == pytest.approx(np.mean(result["latency"]["samples_ms"]))
    assert bt["latency_p90_ms"] == pytest.approx(np.percentile(result["latency"]["samples_ms"], 90))
    # the golden check concerns the job's main model file; energy covers the trace window
    assert result["golden"]["checked"] and result["golden"]["passed"]
    assert result["energy"]["method"] == "simulated" and result["energy"]["total_mj"] > 0
    stored = json.loads(fs.host_path(f"{APP_FILES_DIR}/results/trace-1.json").read_text())
    assert stored == result


def test_frames_beyond_the_budget_list_repeat_it(fs):
    budgets = [ALWAYS_FITS_MS, NEVER_FITS_MS, 1.0]
    job, configs = put_trace_job(fs, budgets, run_id="trace-rep", frames=7)
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "ok", result["error"]
    bt = result["budget_trace"]
    assert bt["frames"] == 7 and [f["budget_ms"] for f in bt["per_frame"]] == [budgets[i % 3] for i in range(7)]
    assert [f["config"] for f in bt["per_frame"]] == [c.entry.name for c in _expected(configs, budgets, 7)]
    assert bt["nothing_fit"] == 2 and bt["deadline_misses"] >= 2


def test_a_configuration_that_does_not_match_its_sha256_is_load_failed(fs):
    job, _ = put_trace_job(fs, [1.0, 2.0], run_id="trace-bad", corrupt="light")
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "load_failed"
    assert "light" in result["error"] and "sha256" in result["error"]
    assert result["budget_trace"] is None and result["latency"] is None
    assert validate_result(result) == []


def test_a_plain_job_has_no_trace_section(fs):
    job, _ = put_trace_job(fs, [1.0], run_id="plain-1", budget_trace=None, measured_runs=3)
    result = run_job(job, fs=fs, device_info=DEVICE_INFO, battery=BatteryModel())
    assert result["status"] == "ok" and result["budget_trace"] is None
    assert validate_result(result) == []
