"""``python -m converters.export``: bundles per format x mode, the table, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from converters.bundle import load_bundle
from converters.export import main
from converters.onnx import export_onnx
from pipeline.cli_support import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cli_default_model_every_onnx_mode(tmp_path, capsys):
    out = tmp_path / "out"
    rc = run_cli(main, ["--model", "default", "--formats", "onnx", "--modes", "dense,palette,palette-int8",
                        "--clusters", "64", "--out", str(out), "--runs", "2", "--eval-samples", "200"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads((out / "export_summary.json").read_text())
    rows = {r["mode"]: r for r in summary["rows"]}
    assert set(rows) == {"dense", "palette", "palette-int8"}
    for mode, row in rows.items():
        bundle = load_bundle(out / f"onnx-{mode}")
        assert bundle.manifest["mode"] == mode and row["bytes"] == bundle.manifest["bytes"]
        assert row["latency_median_ms"] > 0 and row["runtime"] == "onnxruntime"
    assert rows["dense"]["ratio_to_dense"] == 1.0
    assert rows["palette"]["ratio_to_dense"] <= 0.30
    assert rows["palette"]["top1_agreement"] >= 0.9 and rows["palette-int8"]["top1_agreement"] >= 0.9
    assert rows["palette-int8"]["forms"] and "palette-int8" in captured.out and "x dense" in captured.out


def test_cli_onnx_file_source_and_a_format_it_cannot_make(tiny_case, tmp_path, capsys):
    dense = export_onnx(tiny_case.module, tiny_case.example_input, "dense", None, tmp_path / "tiny.onnx").path
    out = tmp_path / "out"
    rc = run_cli(main, ["--model", f"onnx:{dense}", "--formats", "onnx,tflite", "--modes", "dense,palette",
                        "--clusters", "16", "--out", str(out), "--runs", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert load_bundle(out / "onnx-palette").manifest["source_model"] == f"onnx:{dense}"
    assert "onnx: sources are palettized in their own format" in captured.out
    assert not (out / "tflite-palette").exists()


@pytest.mark.parametrize("argv, message", [
    (["--modes", "palette-int4"], "unknown export mode 'palette-int4'; allowed: dense, palette, palette-int8"),
    (["--formats", "coreml"], "unknown export format 'coreml'; allowed: onnx, tflite"),
    (["--runs", "0"], "--runs must be >= 1"),
])
def test_cli_bad_arguments_give_one_line(tmp_path, capsys, argv, message):
    rc = run_cli(main, ["--model", "default", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_truncated_onnx_source(tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07\x12\x04onnx" + b"\xff" * 64)
    rc = run_cli(main, ["--model", f"onnx:{bad}", "--formats", "onnx", "--modes", "dense", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "broken.onnx" in err and ("not a readable ONNX model" in err or "holds no ONNX graph" in err)


def test_module_entry_point_prints_help():
    done = subprocess.run([sys.executable, "-m", "converters.export", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0 and "--formats" in done.stdout and "onnx:<path>" in done.stdout
