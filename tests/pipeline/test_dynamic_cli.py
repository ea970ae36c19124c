"""`python -m pipeline.dynamic` end to end on the default model and the simulated phone (small setting)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {"CI": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    return subprocess.run([sys.executable, "-m", "pipeline.dynamic", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_on_the_default_model_with_the_simulated_phone(tmp_path: Path) -> None:
    out = tmp_path / "dyn"
    proc = _run(["--model", "default", "--device", "sim", "--out", str(out), "--eval-limit", "48",
                 "--exhaustive-limit", "0", "--beam-width", "1", "--max-skipped", "2", "--max-configs", "3",
                 "--runs", "3", "--warmup", "1", "--min-duration-s", "0", "--cooldown-s", "0",
                 "--idle-baseline-s", "0.3", "--trace-frames", "12"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    configs = json.loads((out / "configurations.json").read_text())
    assert configs["accuracy_metric"] == "top1" and len(configs["units"]) == 6
    assert configs["search"]["evaluated"] == 1 + 6 + 5       # greedy: full, 6 singles, 5 pairs
    measured = configs["measured"]
    assert len(measured) == 3 and any(not m["skipped"] for m in measured)
    for m in measured:
        assert m["device"]["status"] == "ok", m["device"]
        assert m["latency_ms"] > 0 and m["energy_mj"] is not None
        assert "simulated" in m["device"]["label"]
        # the exported file's accuracy on the same images as PyTorch's (dense: same predictions, up to ties)
        assert abs(m["accuracy"] - m["accuracy_torch"]) <= 1 / 48 + 1e-9

    pareto = json.loads((out / "pareto.json").read_text())
    front = pareto["front"]
    assert front and {"skipped", "accuracy", "latency_ms", "energy_mj", "latency_rel", "energy_rel",
                      "accuracy_delta"} <= set(front[0])
    for a in front:                                        # no front entry dominated by any measured one
        for b in measured:
            assert not (b["accuracy"] >= a["accuracy"] and b["latency_ms"] <= a["latency_ms"]
                        and b["energy_mj"] <= a["energy_mj"]
                        and (b["accuracy"], b["latency_ms"], b["energy_mj"])
                        != (a["accuracy"], a["latency_ms"], a["energy_mj"]))
        assert Path(a["bundle"]).parent == out / "bundles" and (Path(a["bundle"]) / "manifest.json").is_file()
    assert "simulated" in pareto["latency_source"] and pareto["energy_source"]
    (ref,) = pareto["reference"]                            # the full model, for the relative figures
    assert ref["skipped"] == [] and ref["latency_rel"] == 1.0 and ref["accuracy_delta"] == 0.0
    assert (out / "pareto.png").stat().st_size > 1000
    assert "Pareto front" in proc.stdout and "trace:" in proc.stdout

    trace = json.loads((out / "trace.json").read_text())
    assert trace["summary"]["frames"] == 12 and len(trace["frames"]) == 12
    assert trace["costs_from"].startswith("p90 latency")
    job = json.loads((out / "budget_trace_job.json").read_text())["budget_trace"]
    assert len(job["configurations"]) == len([f for f in front if f["mode"] == "dense"])
    assert len(job["budgets_ms"]) == 12
    # with --device the trace ran in the app on the (simulated) phone: device paths, a stored result
    assert trace["summary"]["where"]["simulated"] is True and trace["summary"]["where"]["run_id"]
    assert all(c["file"].startswith("/data/local/tmp/") and len(c["sha256"]) == 64 for c in job["configurations"])
    device_result = json.loads(Path(trace["result_file"]).read_text())
    assert device_result["status"] == "ok" and device_result["budget_trace"]["frames"] == 12
    assert sum(device_result["budget_trace"]["frames_per_config"].values()) == 12
    runs = [p for p in (out / "runs").glob("*.json") if not p.name.startswith("job-")]
    assert runs and all(json.loads(p.read_text()).get("status") for p in runs)


def test_cli_bad_settings_are_one_readable_line(tmp_path: Path) -> None:
    proc = _run(["--modes", "dense,bogus", "--out", str(tmp_path / "x")], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: modes: bogus is not allowed; use a comma-separated list of dense, palette, palette-int8"]
    proc = _run(["--max-configs", "0", "--out", str(tmp_path / "x")], tmp_path)
    assert proc.returncode == 2 and "max_configs=0 is not allowed" in proc.stderr
