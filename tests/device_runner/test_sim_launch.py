"""``am start`` of the benchmark activity over the wire runs the simulated app and leaves its result."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from adb_shell.adb_device import AdbDeviceTcp

from device_runner.sim import SimulatedPhone

APP_FILES = "/sdcard/Android/data/org.vitpalette.bench/files"
START = "am start -W -n org.vitpalette.bench/.BenchmarkActivity --es job {job}"


def wait_for(path: Path, timeout_s: float = 60.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.exists():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def adb(sim_phone: SimulatedPhone, adb_keypair):
    dev = AdbDeviceTcp("127.0.0.1", sim_phone.port, default_transport_timeout_s=10)
    dev.connect(rsa_keys=[adb_keypair[0]], auth_timeout_s=5)
    yield dev
    dev.close()


def tiny_onnx() -> bytes:
    import numpy as np
    import onnx  # noqa: F401
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_benchmark_activity_runs_the_job_pushed_over_adb(adb: AdbDeviceTcp, sim_phone: SimulatedPhone,
                                                          tmp_path: Path) -> None:
    model = tiny_onnx()
    (tmp_path / "model.onnx").write_bytes(model)
    job = {"schema_version": 1, "run_id": "launch-1", "model_name": "tiny", "format": "onnx", "mode": "dense",
           "model_file": "/data/local/tmp/b/model.onnx", "model_sha256": hashlib.sha256(model).hexdigest(),
           "model_bytes": len(model), "runtime": {"threads": 1, "delegate": "cpu"}, "warmup_runs": 1,
           "measured_runs": 5, "min_duration_s": 0.1, "cooldown_s": 0,
           "energy": {"sample_interval_ms": 50, "idle_baseline_s": 0.1}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    adb.push(str(tmp_path / "model.onnx"), "/data/local/tmp/b/model.onnx")
    adb.push(str(tmp_path / "job.json"), "/data/local/tmp/b/job.json")
    drawn_before = sim_phone.battery.snapshot().energy_drawn_mj
    out = adb.shell(START.format(job="/data/local/tmp/b/job.json"))
    assert "Status: ok" in out and "Complete" in out
    result_path = sim_phone.host_path(f"{APP_FILES}/results/launch-1.json")
    assert wait_for(result_path), "the simulated app wrote no result"
    result = json.loads(adb.shell(f"cat {APP_FILES}/results/launch-1.json"))  # readable without run-as
    assert result["status"] == "ok", result.get("error")
    assert result["device"]["simulated"] is True and result["device"]["model"] == "Pixel 8"
    assert result["latency"]["runs"] >= 5
    assert sim_phone.battery.snapshot().energy_drawn_mj > drawn_before


def test_a_broken_job_still_leaves_a_result_and_the_phone_keeps_serving(adb: AdbDeviceTcp,
                                                                        sim_phone: SimulatedPhone) -> None:
    out = adb.shell(START.format(job="/data/local/tmp/missing.json") + "; echo $?")
    assert out.endswith("Complete\n0\n")
    results = sim_phone.host_path(f"{APP_FILES}/results")
    assert wait_for(results) and wait_for_any(results)
    assert adb.shell("echo alive") == "alive\n"


def wait_for_any(folder: Path, timeout_s: float = 30.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if any(folder.glob("*.json")):
            return True
        time.sleep(0.1)
    return False


def test_start_without_a_job_records_the_intent_only(sim_phone: SimulatedPhone, adb: AdbDeviceTcp) -> None:
    out = adb.shell("am start -n org.vitpalette.bench/.BenchmarkActivity --ez dry true; echo $?")
    assert out.endswith("0\n")
    assert sim_phone.started_intents[-1]["extras"] == {"dry": True}
    assert sim_phone.foreground == ("org.vitpalette.bench", "org.vitpalette.bench.BenchmarkActivity")
    assert "mResumedActivity" in adb.shell("dumpsys activity activities")
