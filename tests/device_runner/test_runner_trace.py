"""End to end: JobRunner.run_trace pushes every configuration bundle to a simulated phone over ADB,
the simulated app switches configuration per frame, and the result comes back with its trace."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from device_runner.runner import DEVICE_WORK_DIR, Bundle, JobRunner, RunSettings, TraceConfiguration
from pipeline.dynamic.selector import select_for_budget
from pipeline.errors import ConfigError
from results.schema import validate_job, validate_result


def chain_bundle(folder: Path, layers: int, width: int = 32) -> Bundle:
    """A bundle folder (model.onnx, golden pair, manifest.json) for a MatMul+Tanh chain of ``layers``."""
    rng = np.random.default_rng(layers)
    ws = [(rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for _ in range(layers)]
    nodes, inits, prev = [], [], "x"
    for i, w in enumerate(ws):
        out = "y" if i == layers - 1 else f"y{i}"
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Tanh", [f"m{i}"], [out])]
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        prev = out
    graph = helper.make_graph(nodes, f"chain{layers}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(data)
    x = np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)
    y = x
    for w in ws:
        y = np.tanh(y @ w)
    np.save(folder / "golden_input.npy", x)
    np.save(folder / "golden_output.npy", y.astype(np.float32))
    manifest = {"schema_version": 1, "source_model": f"chain{layers}", "format": "onnx", "mode": "dense",
                "model_file": "model.onnx", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "golden_input": "golden_input.npy", "golden_output": "golden_output.npy", "atol": 1e-4, "rtol": 1e-4}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return Bundle.open(folder)


SETTINGS = RunSettings(threads=1, warmup_runs=1, measured_runs=1, min_duration_s=0, cooldown_s=0, thermal_timeout_s=0,
                       battery_floor_pct=0, sample_interval_ms=20, idle_baseline_s=0.1, job_timeout_s=60)


@pytest.fixture
def device(sim_phone, adb_keypair):
    from device_runner.device import Device
    from device_runner.profiles import get_profile

    dev = Device.connect(sim_phone.serial, profile=get_profile("sim"), signer=adb_keypair[0])
    yield dev
    dev.close()


def test_run_trace_on_the_simulated_phone(sim_phone, device, tmp_path: Path) -> None:
    configs = [TraceConfiguration(chain_bundle(tmp_path / "b" / "onnx-dense-full", 16), "full", 4.0, 0.95),
               TraceConfiguration(chain_bundle(tmp_path / "b" / "onnx-dense-skip12", 4), "skip12", 1.0, 0.8),
               TraceConfiguration(chain_bundle(tmp_path / "b" / "onnx-dense-skip15", 1), "skip15", 0.2, 0.5)]
    budgets = [100_000.0, 2.0, 0.5, 1e-6, 100_000.0, 2.0]
    runner = JobRunner(device, SETTINGS, energy_method="battery", simulated=True, log=lambda _m: None)
    doc = runner.run_trace(configs, budgets, "trace-e2e-1", frames=9, out_dir=tmp_path / "runs")
    assert doc["status"] == "ok", doc["error"]
    assert validate_result(doc) == []
    # every bundle went to its own folder on the phone, and the job listed them all
    for c in configs:
        assert sim_phone.host_path(f"{DEVICE_WORK_DIR}/{c.bundle.name}/model.onnx").read_bytes() == \
            (c.bundle.path / "model.onnx").read_bytes()
    job = json.loads((tmp_path / "runs" / "job-trace-e2e-1.json").read_text())
    assert validate_job(job) == []
    assert job["model_file"].endswith("onnx-dense-full/model.onnx") and job["golden"]
    assert [c["name"] for c in job["budget_trace"]["configurations"]] == ["full", "skip12", "skip15"]
    bt = doc["budget_trace"]
    front = job["budget_trace"]["configurations"]
    choices = [select_for_budget(front, budgets[i % len(budgets)]) for i in range(9)]
    assert [f["config"] for f in bt["per_frame"]] == [c.entry.name for c in choices]
    assert bt["frames"] == 9 and doc["latency"]["runs"] == 9
    assert bt["nothing_fit"] == sum(not c.fits for c in choices) == 1
    assert bt["frames_per_config"] == {n: sum(c.entry.name == n for c in choices) for n in ("full", "skip12", "skip15")}
    assert bt["deadline_misses"] == sum(f["missed"] for f in bt["per_frame"]) >= 1
    assert doc["golden"]["passed"] and doc["device"]["simulated"] is True
    assert doc["energy"]["method"] == "simulated" and doc["energy"]["total_mj"] > 0
    assert doc["host"]["trace_bundles"]["skip15"] == str(configs[2].bundle.path)


def test_run_trace_rejects_clashing_configurations_before_touching_the_phone(tmp_path: Path) -> None:
    class NoPhone:
        def __getattr__(self, name):
            raise AssertionError(f"the phone was touched ({name}) for an invalid trace")

    b = chain_bundle(tmp_path / "onnx-dense-full", 1)
    runner = JobRunner(NoPhone(), SETTINGS, log=lambda _m: None)
    with pytest.raises(ConfigError, match="share the name"):
        runner.run_trace([TraceConfiguration(b, "a", 1, 1), TraceConfiguration(b, "a", 1, 1)], [1.0], "r1")
    with pytest.raises(ConfigError, match="budgets_ms"):
        runner.run_trace([TraceConfiguration(b, "a", 1, 1)], [1.0, 0.0], "r1")
    with pytest.raises(ConfigError, match="cost_ms"):
        TraceConfiguration(b, "a", -1, 1)
