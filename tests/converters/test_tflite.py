"""TFLite export, every mode, on real conversions (litert-torch) run in LiteRT and compared with PyTorch.

Models (tests/converters/conftest.py): the default model, random-weight timm DeiT-Tiny, random-weight
MobileNetV3-Small (depthwise convs, batch norm folded into the weights by the converter) and a tiny
CNN with non-trivial batch-norm statistics. Each model is converted once (module-scoped cache); the
palette modes are post-passes over that one conversion.
"""

from __future__ import annotations

import numpy as np
import pytest

from converters import tflite_flatbuffer as fb
from converters.errors import ExportVerificationError, ModelFileError
from converters.modes import ExportFormat, ExportMode, target_for
from converters.runtimes import run_tflite_outputs
from converters.tflite import compare_outputs, convert_pytorch, decoded_module, export_tflite

pytestmark = pytest.mark.slow

MODES = [ExportMode.DENSE, ExportMode.PALETTE, ExportMode.PALETTE_INT8]
CASES = ["tiny_case", "default_case", "deit_case", "conv_case"]


@pytest.fixture(scope="module")
def dense_bytes_cache() -> dict:
    return {}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, dense_bytes_cache) -> dict:
    """(case name, mode) -> ExportedFile, each written once per test module."""
    return {"_dir": tmp_path_factory.mktemp("tflite_exports")}


def _export(case, mode: ExportMode, exports: dict, cache: dict):
    key = (case.name, mode)
    if key not in exports:
        if case.name not in cache:
            cache[case.name] = convert_pytorch(case.module, case.example_input)
        palettes = {
            ExportMode.DENSE: None,
            ExportMode.PALETTE: case.palettes,
            ExportMode.PALETTE_INT8: case.palettes_int8,
        }[mode]
        out = exports["_dir"] / f"{case.name.replace(':', '_')}-{mode.value}.tflite"
        exports[key] = export_tflite(
            case.module, case.example_input, mode, palettes, out, dense_tflite=cache[case.name]
        )
    return exports[key]


def _clusters(palettes: dict) -> int:
    return max(int(np.asarray(p.codebook).shape[-1]) for p in palettes.values())


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("case_name", CASES)
def test_round_trip_matches_pytorch(request, case_name, mode, exports, dense_bytes_cache):
    case = request.getfixturevalue(case_name)
    exported = _export(case, mode, exports, dense_bytes_cache)
    assert exported.path.is_file() and exported.format is ExportFormat.TFLITE and exported.mode is mode
    assert exported.bytes == exported.path.stat().st_size
    assert not list(exported.path.parent.glob("*.part"))
    palettes = {
        ExportMode.DENSE: {},
        ExportMode.PALETTE: case.palettes,
        ExportMode.PALETTE_INT8: case.palettes_int8,
    }[mode]
    # every Linear/Conv2d palette of these models lands in the file (nothing left dense)
    assert exported.left_dense == [], exported.left_dense
    assert sorted(t["name"] for t in exported.tensors) == sorted(palettes)
    # an input other than the one export_tflite verified on, against PyTorch with decoded weights
    x = np.random.default_rng(7).standard_normal(tuple(case.example_input.shape)).astype(np.float32)
    import torch

    reference = decoded_module(case.module, palettes or None)
    with torch.no_grad():
        ref = reference(torch.from_numpy(x))
    refs = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else [ref])]
    got = run_tflite_outputs(exported.path, x, threads=2)
    stats = compare_outputs(got, refs, mode, what=str(exported.path), reference_name="PyTorch")
    if mode is not ExportMode.PALETTE_INT8:
        assert stats["max_abs_diff"] < 1e-3
    else:
        # weights are exact; only run-time activation quantization differs (measured <= ~2% of the
        # output range on these models). A wrong scale or layout on any layer costs far more.
        for g, r in zip(got, refs, strict=True):
            assert np.max(np.abs(g - r)) < 0.06 * np.max(np.abs(r))
            assert np.corrcoef(g.ravel(), r.ravel())[0, 1] > 0.999
            assert not np.allclose(
                g, r, atol=1e-6
            )  # the hybrid int8 kernels ran (not a dequantized fp32 path)


@pytest.mark.parametrize("case_name", CASES)
def test_palette_file_holds_at_most_k_codes_and_is_small(request, case_name, exports, dense_bytes_cache):
    case = request.getfixturevalue(case_name)
    dense = _export(case, ExportMode.DENSE, exports, dense_bytes_cache)
    pal = _export(case, ExportMode.PALETTE, exports, dense_bytes_cache)
    k = _clusters(case.palettes)
    model = fb.read_tflite(pal.path)
    names = {fb.tensor_name(t): t for t in model.subgraphs[0].tensors}
    ops = [fb.op_name(model, op) for op in model.subgraphs[0].operators]
    assert ops.count("GATHER") >= len(pal.tensors)
    for info in pal.tensors:
        idx = fb.constant_array(model, names[info["index_tensor"]])
        assert idx.dtype == np.uint8 and list(idx.shape) == info["shape"]
        if info["groups"] == 1:
            assert len(np.unique(idx)) <= k
        # the fp32 weight tensor is now computed, not stored
        assert fb.constant_array(model, names[info["file_tensors"][0]]) is None
    # file size = dense - dense weights + indices/codebooks (+ a little for the new ops and tensors)
    predicted = (
        dense.bytes - sum(t["dense_bytes"] for t in pal.tensors) + sum(t["file_bytes"] for t in pal.tensors)
    )
    assert abs(pal.bytes - predicted) <= 0.02 * dense.bytes + 64 * 1024
    weight_share = sum(t["dense_bytes"] for t in pal.tensors) / dense.bytes
    if weight_share > 0.9 and k <= 64:
        assert pal.bytes < dense.bytes / 3.2  # ~4x smaller when nearly all bytes are clustered weights


@pytest.mark.parametrize("case_name", CASES)
def test_int8_file_uses_per_channel_int8_with_at_most_k_levels(
    request, case_name, exports, dense_bytes_cache
):
    case = request.getfixturevalue(case_name)
    exported = _export(case, ExportMode.PALETTE_INT8, exports, dense_bytes_cache)
    k = _clusters(case.palettes_int8)
    model = fb.read_tflite(exported.path)
    names = {fb.tensor_name(t): t for t in model.subgraphs[0].tensors}
    for info in exported.tensors:
        t = names[info["file_tensors"][0]]
        assert fb.tensor_type_name(t.type) == "INT8"
        qp = t.quantization
        axis = int(qp.quantizedDimension)
        assert len(qp.scale) == t.shape[axis] and not np.any(np.asarray(qp.zeroPoint))
        q = np.moveaxis(fb.constant_array(model, t), axis, 0).reshape(t.shape[axis], -1)
        assert max(len(np.unique(row)) for row in q) <= k
    ops = {fb.op_name(model, op) for op in model.subgraphs[0].operators}
    assert "GATHER" not in ops and "DEQUANTIZE" not in ops  # stock hybrid kernels read int8 directly


def test_conv_model_covers_depthwise_and_folded_batch_norm(conv_case, tiny_case, exports, dense_bytes_cache):
    for case in (conv_case, tiny_case):
        for mode in (ExportMode.PALETTE, ExportMode.PALETTE_INT8):
            exported = _export(case, mode, exports, dense_bytes_cache)
            readers = {r for t in exported.tensors for r in t["readers"]}
            assert "DEPTHWISE_CONV_2D" in readers, readers
            assert any("folded" in t["form"] for t in exported.tensors), "batch norm folding not seen"


def test_failed_verification_leaves_no_file(tiny_case, tmp_path, exports, dense_bytes_cache):
    """A palette whose stored codebook disagrees with its decode is caught before the rename."""
    import copy

    _export(tiny_case, ExportMode.DENSE, exports, dense_bytes_cache)
    bad = copy.deepcopy(tiny_case.palettes)
    name = sorted(bad)[-1]
    original_decode = bad[name].decode()
    bad[name].codebook = bad[name].codebook * 3.0
    bad[name].decode = lambda: original_decode  # reference and file lookup see the old values
    out = tmp_path / "bad.tflite"
    with pytest.raises(ExportVerificationError) as info:
        export_tflite(
            tiny_case.module,
            tiny_case.example_input,
            ExportMode.PALETTE,
            bad,
            out,
            dense_tflite=dense_bytes_cache[tiny_case.name],
        )
    assert "bad.tflite" in str(info.value) and "max |diff|" in str(info.value)
    assert "tflite/palette" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_tolerances_come_from_the_export_targets():
    assert target_for("tflite", "palette").tolerance.atol <= 1e-4
    assert target_for("tflite", "palette-int8").tolerance.atol_of_range > 0


# -- tflite:<path> sources ----------------------------------------------------------------------


def _file_palettizer():
    from pipeline.palettize import PalettizeConfig

    return PalettizeConfig(clusters=16, weight_threshold=256), None


@pytest.mark.parametrize(
    "mode", [ExportMode.PALETTE, ExportMode.PALETTE_INT8], ids=["palette", "palette-int8"]
)
def test_tflite_file_source_round_trip(tiny_case, mode, tmp_path, exports, dense_bytes_cache):
    import dataclasses

    from converters.tflite import palettize_tflite_file

    dense = _export(tiny_case, ExportMode.DENSE, exports, dense_bytes_cache)
    config, fn = _file_palettizer()
    config = dataclasses.replace(config, int8_grid=mode is ExportMode.PALETTE_INT8)
    out = tmp_path / "from_file.tflite"
    exported = palettize_tflite_file(dense.path, config, out, mode=mode, palettize_fn=fn)
    assert out.is_file() and exported.mode is mode and exported.tensors
    readers = {r for t in exported.tensors for r in t["readers"]}
    assert {"FULLY_CONNECTED", "DEPTHWISE_CONV_2D"} <= readers
    assert exported.bytes < dense.bytes
    for info in exported.tensors:
        assert info["distinct_codes"] <= 16
    # the palettized file stays close to the dense one (16 clusters; int8 adds activation noise)
    x = np.random.default_rng(3).standard_normal(tuple(tiny_case.example_input.shape)).astype(np.float32)
    ref = run_tflite_outputs(dense.path, x)[0]
    got = run_tflite_outputs(out, x)[0]
    assert np.max(np.abs(got - ref)) < 0.25 * np.max(np.abs(ref))


def test_tflite_file_source_rejects_truncated_file(tiny_case, tmp_path, exports, dense_bytes_cache):
    from converters.tflite import palettize_tflite_file

    dense = _export(tiny_case, ExportMode.DENSE, exports, dense_bytes_cache)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(dense.path.read_bytes()[: dense.bytes // 2])
    config, fn = _file_palettizer()
    with pytest.raises(ModelFileError, match="cut.tflite"):
        palettize_tflite_file(cut, config, tmp_path / "out.tflite", palettize_fn=fn)
    assert not (tmp_path / "out.tflite").exists()
