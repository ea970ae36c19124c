"""`python -m pipeline.palettize` end to end: report.json contents, palettes file, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli_support import run_cli
from pipeline.palettize import PalettizeConfig, load_palette_config, load_palettes
from pipeline.palettize.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = run_cli(main, argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow  # loads the test split, runs both models over 300 of its images
def test_default_model_end_to_end(tmp_path: Path, capsys, default_model) -> None:
    out_dir = tmp_path / "out" / "palettes"  # parents are created too
    code, stdout, stderr = run(["--model", "default", "--clusters", "64", "--eval-samples", "300",
                                "--out", str(out_dir)], capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["palettes.safetensors", "report.json"]
    report = json.loads((out_dir / "report.json").read_text())
    acc = report["accuracy"]
    assert 0.0 <= acc["dense"] <= 1.0 and 0.0 <= acc["palettized"] <= 1.0
    assert acc["samples"] == 300 and acc["split"] == "test"
    assert report["config"]["clusters"] == 64 and report["config"]["granularity"] == "per_tensor"
    palettes = load_palettes(out_dir / "palettes.safetensors")
    names = [t["name"] for t in report["tensors"]]
    assert names == list(palettes) and names
    params = dict(default_model.module.named_parameters())
    for t in report["tensors"]:
        assert {"name", "shape", "clusters", "distinct_values", "sqnr_db"} <= set(t)
        assert t["shape"] == list(params[t["name"]].shape)
        assert t["distinct_values"] <= t["clusters"] == 64
        assert t["sqnr_db"] is None or t["sqnr_db"] > 20
        assert np.unique(palettes[t["name"]].decode()).size == t["distinct_values"]
    assert report["totals"]["tensors_clustered"] == len(names)
    assert set(report["timings_s"]) >= {"load", "palettize", "evaluate"}
    assert 0.0 <= report["fidelity"]["top1_agreement"] <= 1.0
    assert load_palette_config(out_dir / "palettes.safetensors") == PalettizeConfig(clusters=64)
    # the printed report names the tensors and the accuracy before and after
    assert names[0] in stdout and "dense" in stdout and "palettized" in stdout


def test_yaml_config_and_flags_combine(tmp_path: Path, capsys, default_model) -> None:
    cfg = tmp_path / "pal.yaml"
    cfg.write_text("clusters: 16\ngranularity: per_channel_group\ngroup_size: 32\nexclude: ['head']\n")
    out_dir = tmp_path / "o"
    code, _, stderr = run(["--config", str(cfg), "--int8-grid", "--clusters", "8", "--eval-samples", "100",
                           "--out", str(out_dir)], capsys)
    assert code == 0, stderr
    report = json.loads((out_dir / "report.json").read_text())
    assert report["config"]["clusters"] == 8  # the flag wins over the YAML
    assert report["config"]["group_size"] == 32 and report["config"]["int8_grid"] is True
    assert report["accuracy"]["samples"] == 100
    for pal in load_palettes(out_dir / "palettes.safetensors").values():
        assert pal.int8_grid and pal.max_distinct_per_group() <= 8


def test_budget_sensitivity_and_gptq_from_the_command_line(tmp_path: Path, capsys, default_model) -> None:
    out_dir = tmp_path / "o"
    code, stdout, stderr = run(["--target-bits", "4", "--sensitivity", "activation", "--assignment", "gptq",
                                "--int8-grid", "--calibration", "16", "--eval-samples", "200",
                                "--out", str(out_dir)], capsys)
    assert code == 0, stderr
    assert "calibration: 16 inputs from --data default" in stdout
    report = json.loads((out_dir / "report.json").read_text())
    cfg = report["config"]
    assert (cfg["target_bits"], cfg["sensitivity"], cfg["assignment"]) == (4.0, "activation", "gptq")
    assert report["bits_per_weight"] <= 4.0 and report["budget"]["bits_per_weight"] == report["bits_per_weight"]
    assert set(report["budget"]["layers"]) == {t["name"] for t in report["tensors"]}
    # the saved config says per layer what the budget chose, so the file rebuilds the same palettes
    saved = load_palette_config(out_dir / "palettes.safetensors")
    palettes = load_palettes(out_dir / "palettes.safetensors")
    for name, pal in palettes.items():
        layer = report["budget"]["layers"][name]
        assert saved.resolve(name).clusters == layer["clusters"] >= pal.max_distinct_per_group()
        assert pal.int8_grid
    assert abs(report["accuracy"]["delta"]) <= 0.02


@pytest.mark.slow  # tunes the default model's int8 scales for one epoch, scores 200 test images
def test_tuning_from_the_command_line(tmp_path: Path, capsys, default_model) -> None:
    out_dir = tmp_path / "o"
    code, stdout, stderr = run(["--clusters", "8", "--int8-grid", "--tune-epochs", "1", "--tune-inputs", "160",
                                "--calibration", "16", "--eval-samples", "200", "--out", str(out_dir)], capsys)
    assert code == 0, stderr
    assert "calibration: 16 inputs from --data default; tuning on 160 augmented ones" in stdout
    report = json.loads((out_dir / "report.json").read_text())
    assert report["config"]["tune_epochs"] == 1 and report["config"]["tune_lr"] == 0.001
    tune = report["tune"]
    assert tune["inputs"] + tune["held_back"] == 160 and tune["loss_after"] <= tune["loss_before"]
    assert load_palette_config(out_dir / "palettes.safetensors").tune_epochs == 1
    assert report["bits_per_weight"] <= 3.5  # 3-bit indices, int8 codebook and scales: tuning adds nothing


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target-bits", "0.5"], "target_bits must be an average number of bits per weight"),
        (["--assignment", "round"], "assignment must be one of"),
        (["--sensitivity", "gptq"], "sensitivity must be one of"),
        (["--assignment", "gptq", "--data", "file:/no/such.npy"], "cannot read data file"),
        (["--clusters", "300"], "clusters must be an integer from 2 to 256"),
        (["--clusters", "1"], "clusters must be an integer from 2 to 256"),
        (["--granularity", "per_channel_group"], "group_size is required"),
        (["--include", r"blocks\.99\."], "matches no Linear/Conv2d weight"),
        (["--model", "no/such/model.pt"], "does not exist"),
        (["--weight-threshold", "100000000"], "nothing to palettize"),
        (["--tune-epochs", "-2"], "tune_epochs must be an integer"),
        (["--tune-epochs", "1", "--tune-lr", "5"], "tune_lr must be a learning rate"),
        (["--tune-epochs", "1", "--tune-inputs", "0"], "--tune-inputs must be a positive integer"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path: Path, capsys, args, expected) -> None:
    out_dir = tmp_path / "out"
    code, _, stderr = run([*args, "--out", str(out_dir)], capsys)
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr
    assert "Traceback" not in stderr
    assert not out_dir.exists()


def test_unwritable_out_fails_before_work_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, stderr = run(["--out", str(blocker / "out")], capsys)
    assert code == 2 and "is a file, not a folder" in stderr and "--out" in stderr
    code, _, stderr = run(["--out", str(blocker)], capsys)
    assert code == 2 and "exists and is not a folder" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert blocker.read_text() == "not a folder"


def test_module_entry_point_runs(tmp_path: Path) -> None:
    """The real `python -m` entry, as a user types it (bad input: fast, no model work)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.palettize", "--clusters", "0", "--out", str(tmp_path / "x")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: clusters must be an integer from 2 to 256")


def _small_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()


@pytest.mark.parametrize("kind", ["torchscript", "export", "pickle"])
def test_model_files_report_fidelity_not_accuracy(tmp_path: Path, capsys, kind: str) -> None:
    import torch

    model = _small_model()
    path = tmp_path / f"model_{kind}.{'pt2' if kind == 'export' else 'pt'}"
    extra: list[str] = []
    if kind == "torchscript":
        with pytest.warns(FutureWarning):  # torch deprecates tracing; files made by it still load
            torch.jit.trace(model, torch.randn(1, 64)).save(str(path))
    elif kind == "export":  # the graph keeps Linear only in node metadata: selection must find it
        torch.export.save(torch.export.export(model, (torch.randn(1, 64),)), str(path))
    else:
        torch.save(model, path)
        code, _, stderr = run(["--model", str(path), "--input-shape", "1,64", "--out", str(tmp_path / "x")],
                              capsys)
        assert code == 2 and "--allow-pickle" in stderr and not (tmp_path / "x").exists()
        extra = ["--allow-pickle"]
    out_dir = tmp_path / "out"
    code, stdout, stderr = run(["--model", str(path), "--input-shape", "1,64", "--clusters", "8",
                                "--eval-batch", "4", *extra, "--out", str(out_dir)], capsys)
    assert code == 0, stderr
    report = json.loads((out_dir / "report.json").read_text())
    assert report["accuracy"]["dense"] is None and report["accuracy"]["palettized"] is None
    assert {"max_abs_diff", "mean_abs_diff", "top1_agreement"} <= set(report["fidelity"])
    assert report["fidelity"]["samples"] == 4
    assert [t["name"] for t in report["tensors"]] == ["0.weight"]  # 2.weight: 1280 < 2048
    assert report["tensors"][0]["distinct_values"] <= 8
    assert report["skipped"] == [{"name": "2.weight", "reason": "1280 elements < weight_threshold 2048"}]
    assert "output fidelity" in stdout
