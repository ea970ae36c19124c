"""The Java core against the shared contract: its JUnit suite, and the Python schema on its output.

The JUnit tests (android_app/core/run_tests.sh) read the shared job fixtures and leave every
result document they produce in a folder; here each of those documents must pass
``results.schema.validate_result`` (schema plus invariants), numpy must load the .npy files the
Java writer produced, and Java's job checker must agree with jsonschema on a few hundred job
documents mutated from the valid fixtures.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from results.schema import RESULT_STATUSES, strip_fixture_metadata, validate_job, validate_result

pytestmark = [pytest.mark.java, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "contracts"


def test_junit_suite_passes(java_run) -> None:
    assert java_run.returncode == 0, java_run.output[-6000:]
    assert "OK (" in java_run.output, java_run.output[-2000:]


def _java_results(java_run) -> list[Path]:
    return sorted(p for p in java_run.results_dir.rglob("*.json"))


def test_every_result_the_java_core_writes_is_valid(java_run) -> None:
    assert java_run.returncode == 0, java_run.output[-3000:]
    paths = _java_results(java_run)
    assert len(paths) >= 10, f"the Java tests left only {len(paths)} results in {java_run.results_dir}"
    failures = {}
    statuses = set()
    for path in paths:
        doc = json.loads(path.read_text(encoding="utf-8"))
        errors = validate_result(doc)
        if errors:
            failures[str(path.relative_to(java_run.results_dir))] = errors
        statuses.add(doc["status"])
    assert not failures, json.dumps(failures, indent=2)
    # The Java runner reaches every status the schema knows.
    assert statuses == set(RESULT_STATUSES), f"statuses produced: {sorted(statuses)}"


def test_java_energy_and_latency_figures_are_consistent(java_run) -> None:
    doc = json.loads((java_run.results_dir / "runner" / "okRunWithGoldenEnergyAndCollector.json").read_text())
    lat, energy = doc["latency"], doc["energy"]
    assert np.isclose(lat["mean_ms"], np.mean(lat["samples_ms"]))
    assert np.isclose(lat["median_ms"], np.median(lat["samples_ms"]))
    assert np.isclose(lat["p90_ms"], np.percentile(lat["samples_ms"], 90))
    assert np.isclose(lat["std_ms"], np.std(lat["samples_ms"]), atol=1e-9)
    assert np.isclose(energy["net_mj"], energy["total_mj"] - energy["idle_mj"])
    assert np.isclose(energy["per_inference_mj"], energy["net_mj"] / lat["runs"])
    # Stored samples use Android's convention whatever the device reported: uA, negative = discharging.
    assert all(s["current_ua"] < 0 for s in energy["samples"])
    t = np.array([s["t_ms"] for s in energy["samples"]])
    p = np.array([s["power_mw"] for s in energy["samples"]])
    # The samples lie inside the window, so their trapezoid cannot exceed the window's total.
    assert np.trapezoid(p, t) / 1000.0 <= energy["total_mj"] * (1 + 1e-9)


def test_numpy_loads_the_npy_files_java_writes(java_run) -> None:
    a = np.load(java_run.results_dir / "npy" / "sin_2x3x4.npy")
    assert a.dtype == np.float32 and a.shape == (2, 3, 4)
    # Java wrote (float) Math.sin(i) * 3.5f: a float32 product of the rounded sine.
    np.testing.assert_array_equal(a.ravel(), np.sin(np.arange(24)).astype(np.float32) * np.float32(3.5))
    b = np.load(java_run.results_dir / "npy" / "vector_5.npy")
    assert b.shape == (5,) and b[-1] == np.finfo(np.float32).max


# ---- differential check: Java's job validation vs jsonschema --------------------------------

_ODD_VALUES: list[Any] = [None, "", "x", "/abs/path", -1, 0, 1, 2.5, 4.0, 65, 10**12, True, [], {}]
_NESTED = {"runtime": ("threads", "delegate"),
           "energy": ("sample_interval_ms", "idle_baseline_s", "current_unit", "current_sign", "prefer_odpm"),
           "golden": ("input_file", "output_file", "atol", "rtol")}
_EXTRA_TOP = ("run_set", "created_at", "timeout_s", "golden", "collector_url", "collector_token",
              "result_file", "budget_trace")
_STRINGS = {"format": ["tflite", "TFLITE"], "mode": ["palette-int8", "Palette", "new.mode_2"],
            "collector_url": ["http://10.0.2.2:8765", "https://h/p q", "ftp://h"],
            "created_at": ["2026-11-23T04:12:00Z", "2026-11-23 04:12:00", "2026-11-23T04:12:00+05:30"],
            "run_id": ["ok.run-1_x", "-bad", "a" * 128, "a" * 129],
            "model_sha256": ["0" * 64, "F" * 64], "current_unit": ["ma", "mA"],
            "current_sign": ["positive_is_discharge", "positive"], "delegate": ["gpu", "GPU", "tpu"]}


def _mutations(base: dict[str, Any]):
    keys = list(base) + [k for k in _EXTRA_TOP if k not in base]
    for key in keys:
        for value in _ODD_VALUES + _STRINGS.get(key, []):
            doc = copy.deepcopy(base)
            doc[key] = value
            yield f"{key}={value!r}", doc
        if key in base:
            doc = copy.deepcopy(base)
            del doc[key]
            yield f"del {key}", doc
    for parent, children in _NESTED.items():
        template = base.get(parent) or {"input_file": "/g/in.npy", "output_file": "/g/out.npy", "atol": 0.001,
                                        "rtol": 0.0}
        for child in children:
            for value in _ODD_VALUES + _STRINGS.get(child, []):
                doc = copy.deepcopy(base)
                doc[parent] = dict(template, **{child: value})
                yield f"{parent}.{child}={value!r}", doc
            doc = copy.deepcopy(base)
            doc[parent] = {k: v for k, v in template.items() if k != child}
            yield f"del {parent}.{child}", doc
        doc = copy.deepcopy(base)
        doc[parent] = dict(template, surprise=1)
        yield f"{parent}.surprise", doc
    doc = copy.deepcopy(base)
    doc["surprise"] = 1
    yield "surprise", doc


def test_java_job_validation_agrees_with_jsonschema(java_run, tmp_path: Path) -> None:
    assert java_run.returncode == 0, java_run.output[-3000:]
    cases: list[tuple[str, Path, bool]] = []
    sources = sorted((FIXTURES / "job" / "valid").glob("*.json")) + sorted((FIXTURES / "job" / "invalid").glob("*.json"))
    for src in sources:
        base = strip_fixture_metadata(json.loads(src.read_text(encoding="utf-8")))
        cases.append((f"{src.name}", src, not validate_job(base)))
        if src.parent.name != "valid":
            continue
        for label, doc in _mutations(base):
            path = tmp_path / f"case{len(cases):04d}.json"
            path.write_text(json.dumps(doc), encoding="utf-8")
            cases.append((f"{src.name}: {label}", path, not validate_job(doc)))
    # Fixture files carry _why; the Java checker sees them stripped like the Python side does.
    for i, (label, path, expect_valid) in enumerate(cases):
        if path.parent.parent == FIXTURES / "job":
            stripped = tmp_path / f"fixture{i:04d}.json"
            stripped.write_text(json.dumps(strip_fixture_metadata(json.loads(path.read_text()))), encoding="utf-8")
            cases[i] = (label, stripped, expect_valid)
    assert sum(1 for c in cases if c[2]) > 20 and sum(1 for c in cases if not c[2]) > 100
    proc = subprocess.run(
        ["java", "-cp", str(java_run.classes_dir), "org.vitpalette.bench.core.JobCheck", *[str(c[1]) for c in cases]],
        capture_output=True, text=True, timeout=120,
    )
    lines = {line.split(" ", 2)[1].rstrip(":"): line for line in proc.stdout.splitlines()}
    disagreements = []
    for label, path, expect_valid in cases:
        line = lines.get(str(path))
        assert line is not None, f"JobCheck printed nothing for {path}: {proc.stderr[-2000:]}"
        java_valid = line.startswith("OK ")
        if java_valid != expect_valid:
            disagreements.append(f"{label}: jsonschema {'accepts' if expect_valid else 'rejects'}, Java says {line}")
    assert not disagreements, "\n".join(disagreements)
