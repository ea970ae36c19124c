"""``onnx:<path>`` sources: palettize an existing ONNX file's float weights, no PyTorch model."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from converters.errors import ModelFileError
from converters.onnx import export_onnx
from converters.runtimes import run_onnx
from converters.sources import load_onnx_model, onnx_file_bundle, onnx_weight_candidates, open_file_source


@pytest.fixture(scope="module")
def dense_file(tiny_case, tmp_path_factory):
    return export_onnx(tiny_case.module, tiny_case.example_input, "dense", None,
                       tmp_path_factory.mktemp("src") / "tiny.onnx").path


def test_weights_are_found_with_their_module_types(dense_file):
    candidates = onnx_weight_candidates(load_onnx_model(dense_file))
    kinds = sorted((mtype, w.shape) for mtype, w, _ in candidates.values())
    assert ("Linear", (96, 3136)) in kinds        # fc1 as [out, in] whatever the file layout
    assert ("Conv2d", (32, 1, 3, 3)) in kinds     # BatchNorm already folded in by the exporter


@pytest.mark.parametrize("mode", ["palette", "palette-int8"])
def test_onnx_source_round_trip(dense_file, tmp_path, mode):
    from pipeline.palettize import PalettizeConfig

    config = PalettizeConfig(clusters=16, int8_grid=mode == "palette-int8", weight_threshold=1024)
    src = open_file_source(f"onnx:{dense_file}")
    assert src.input_shape == (1, 1, 28, 28)
    bundle = onnx_file_bundle(src, mode, config, tmp_path, f"onnx-{mode}", dense_bytes=dense_file.stat().st_size)
    manifest = bundle.manifest
    assert manifest["source_model"] == f"onnx:{dense_file}" and manifest["palettize_config"]["clusters"] == 16
    assert "decoded values" in manifest["verification"]["reference"]
    names = {t["name"] for t in manifest["palette"]["tensors"]}
    assert len(names) >= 4 and manifest["bytes"] < 0.5 * dense_file.stat().st_size
    assert all(t["distinct_codes"] <= 16 for t in manifest["palette"]["tensors"])
    # clustered at 16 levels, the file stays close to the original dense file
    x = src.example_input(4, seed=3)
    diff = np.abs(run_onnx(bundle.model_path, x) - run_onnx(dense_file, x)).max()
    assert diff < 0.25 * np.abs(run_onnx(dense_file, x)).max()


def test_truncated_onnx_source_gives_a_clear_error(dense_file, tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(dense_file.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="cut.onnx is not a readable ONNX model"):
        open_file_source(f"onnx:{cut}")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="holds no ONNX graph"):
        open_file_source(f"onnx:{empty}")


def test_onnx_source_needs_no_torch(dense_file, tmp_path):
    """The whole onnx: path runs with torch made unimportable."""
    import subprocess

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from converters.sources import open_file_source, onnx_file_bundle\n"
        "from pipeline.palettize import PalettizeConfig\n"
        f"src = open_file_source('onnx:{dense_file}')\n"
        f"b = onnx_file_bundle(src, 'palette', PalettizeConfig(weight_threshold=1024), r'{tmp_path}', 'b')\n"
        "print(len(b.manifest['palette']['tensors']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) >= 4
