"""Verification: per-target tolerances, one error listing every mismatching output, file invariants."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters.errors import ConfigError, ExportVerificationError, PaletteFileError
from converters.modes import (
    ExportFormat,
    ExportMode,
    ExportTarget,
    OnnxDense,
    OnnxPaletteInt8,
    Tolerance,
    target_for,
)
from converters.onnx import export_onnx
from converters.verify import check_outputs, check_palette_file, compare_outputs


def test_every_format_and_mode_has_a_target():
    for fmt in ExportFormat:
        for mode in ExportMode:
            target = target_for(fmt.value, mode.value)
            assert target.format is fmt and target.mode is mode and target.why


def test_unknown_mode_names_the_allowed_values():
    with pytest.raises(ConfigError, match="allowed: dense, palette, palette-int8"):
        target_for("onnx", "palette-int4")


def test_registering_a_target_twice_is_an_error():
    with pytest.raises(TypeError, match="registered twice"):
        class Again(ExportTarget):  # noqa: F841
            format = ExportFormat.ONNX
            mode = ExportMode.DENSE
            tolerance = Tolerance(atol=1.0)


def test_tolerance_is_checked_when_built():
    with pytest.raises(ConfigError, match="atol"):
        Tolerance(atol=-1.0)


def test_one_error_lists_every_mismatching_output_with_worst_difference_and_tolerance():
    ref = [np.zeros((2, 3), np.float32), np.ones((4,), np.float32), np.full((2,), 5.0, np.float32)]
    got = [ref[0].copy(), ref[1].copy(), ref[2].copy()]
    got[0][1, 2] = 0.5      # mismatch in the first output
    got[2][0] = 5.25        # and in the third; the second matches
    with pytest.raises(ExportVerificationError) as info:
        check_outputs(ref, got, OnnxDense, file="model.onnx", names=["logits", "aux", "extra"])
    text = str(info.value)
    assert "onnx/dense file model.onnx differs from the PyTorch model in 2 of 3 outputs" in text
    assert "logits: worst |diff| 0.5 at [1, 2] (file 0.5, reference 0)" in text
    assert "extra: worst |diff| 0.25 at [0]" in text
    assert "allowed 0.0001" in text and "atol 0.0001 + rtol 0.0001 x |ref|" in text
    assert "aux" not in text
    assert [m["output"] for m in info.value.facts["mismatches"]] == ["logits", "extra"]


def test_missing_output_and_wrong_shape_are_mismatches():
    ref = [np.zeros((1, 3), np.float32), np.zeros((2,), np.float32)]
    report = compare_outputs(ref, [np.zeros((1, 4), np.float32)], OnnxDense.tolerance)
    problems = [o.problem for o in report.outputs]
    assert problems == ["shape [1, 4] != reference [1, 3]", "missing in the file"]
    assert not report.passed


def test_nan_in_the_file_is_a_mismatch():
    report = compare_outputs([np.ones(3, np.float32)], [np.array([1, np.nan, 1], np.float32)], OnnxDense.tolerance)
    assert not report.passed


def test_int8_tolerance_scales_with_the_output_range():
    ref = np.array([100.0, -50.0, 0.0], np.float32)
    ok = ref + np.array([10.0, -10.0, 5.0], np.float32)   # 10% of the range
    bad = ref + np.array([30.0, 0.0, 0.0], np.float32)    # 30% of the range
    assert compare_outputs([ref], [ok], OnnxPaletteInt8.tolerance).passed
    assert not compare_outputs([ref], [bad], OnnxPaletteInt8.tolerance).passed


def _tamper(path, exported, fn):
    model = onnx.load(str(path))
    for t in model.graph.initializer:
        arr = numpy_helper.to_array(t)
        new = fn(t.name, arr)
        if new is not None:
            t.CopyFrom(numpy_helper.from_array(new, t.name))
    onnx.save(model, str(path))


def test_palette_file_with_an_out_of_range_code_is_rejected(tiny_case, tmp_path):
    exported = export_onnx(tiny_case.module, tiny_case.example_input, "palette", tiny_case.palettes,
                           tmp_path / "p.onnx")
    check_palette_file(exported.path, exported)
    target = f"{exported.tensors[0]['initializer']}.palette_indices"

    def bump(name, arr):
        if name == target:
            arr = arr.copy()
            arr.flat[0] = 200
            return arr
        return None

    _tamper(exported.path, exported, bump)
    with pytest.raises(PaletteFileError, match=r"index 200 >= 64 clusters"):
        check_palette_file(exported.path, exported)


def test_int8_file_with_too_many_values_per_channel_is_rejected(tiny_case, tmp_path):
    exported = export_onnx(tiny_case.module, tiny_case.example_input, "palette-int8", tiny_case.palettes_int8,
                           tmp_path / "q.onnx")
    check_palette_file(exported.path, exported)
    t = next(t for t in exported.tensors if t["name"] == "fc1.weight")
    qname, axis = next(iter(t["int8_channel_axes"].items()))

    def spread(name, arr):
        if name == qname:
            arr = np.moveaxis(arr.copy(), axis, 0)
            arr[0, :] = (np.arange(arr.shape[1]) % 200 - 100).astype(np.int8)  # 200 distinct values
            return np.ascontiguousarray(np.moveaxis(arr, 0, axis))
        return None

    _tamper(exported.path, exported, spread)
    with pytest.raises(PaletteFileError, match="distinct int8 values in one channel > 64"):
        check_palette_file(exported.path, exported)


def test_palette_file_size_must_match_the_report(tiny_case, tmp_path):
    dense = export_onnx(tiny_case.module, tiny_case.example_input, "dense", None, tmp_path / "d.onnx")
    exported = export_onnx(tiny_case.module, tiny_case.example_input, "palette", tiny_case.palettes,
                           tmp_path / "p.onnx")
    check_palette_file(exported.path, exported, dense_bytes=dense.bytes)
    with pytest.raises(PaletteFileError, match="the report implies"):
        check_palette_file(exported.path, exported, dense_bytes=dense.bytes * 3)
    exported.tensors[0]["file_bytes"] += 1
    with pytest.raises(PaletteFileError, match="report says"):
        check_palette_file(exported.path, exported)
