"""ONNX export round trips in every mode, compared with PyTorch, and the palette file invariants."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters.bundle import export_bundle
from converters.modes import ExportMode
from converters.onnx import decode_palette, export_onnx
from converters.runtimes import run_onnx, run_onnx_outputs
from converters.verify import check_palette_file, palettized_reference, torch_outputs

MODES = [m.value for m in ExportMode]


def _palettes(case, mode):
    return {"dense": None, "palette": case.palettes, "palette-int8": case.palettes_int8}[mode]


def _round_trip(case, tmp_path, mode):
    pal = _palettes(case, mode)
    bundle = export_bundle(case.module, case.example_input, "onnx", mode, pal, tmp_path, source_model=case.name)
    manifest = bundle.manifest
    assert manifest["verification"]["passed"] and manifest["mode"] == mode
    # Independently of the bundle's own check: the file against PyTorch on a fresh seeded batch.
    x = np.random.default_rng(7).standard_normal((3, *case.example_input.shape[1:])).astype(np.float32)
    ref_module, _ = palettized_reference(case.module, pal)
    ref = torch_outputs(ref_module, x)[0]
    got = run_onnx(bundle.model_path, x)
    bound = 1e-4 + 1e-4 * np.abs(ref) if mode != "palette-int8" else 0.2 * np.abs(ref).max()
    assert np.all(np.abs(got - ref) <= bound), float(np.abs(got - ref).max())
    if pal:
        assert bundle.exported.left_dense == []
        assert {t["name"] for t in bundle.exported.tensors} == set(pal)
        for t in bundle.exported.tensors:
            assert t["distinct_codes"] <= t["clusters"] == 64 or case.name == "tiny"
    return bundle


@pytest.mark.parametrize("mode", MODES)
def test_tiny_round_trip_every_mode(tiny_case, tmp_path, mode):
    bundle = _round_trip(tiny_case, tmp_path, mode)
    tensors = bundle.exported.tensors
    if mode == "palette":
        assert {t["form"] for t in tensors} == {"gather"}
        # conv is followed by BatchNorm: the exporter folds it, the palette goes in with a channel scale
        assert next(t for t in tensors if t["name"] == "conv.weight")["folded_channel_scale"]
    if mode == "palette-int8":
        forms = {t["name"]: t["form"] for t in tensors}
        assert forms["dw.weight"] == "ConvInteger"  # depthwise too
        assert forms["q.weight"] == forms["k.weight"] == "MatMulInteger"  # two projections of one input


@pytest.mark.parametrize("mode", MODES)
def test_default_model_round_trip(default_case, tmp_path, mode):
    _round_trip(default_case, tmp_path, mode)


def test_default_palette_file_is_about_a_quarter_of_dense(default_case, tmp_path):
    """Bound: uint8 indices are 1/4 of fp32; codebooks and the unclustered tensors (biases, norms,
    embeddings under the 2048-element threshold) may add at most 5 points: ratio <= 0.30."""
    dense = export_onnx(default_case.module, default_case.example_input, "dense", None, tmp_path / "d.onnx")
    pal = export_onnx(default_case.module, default_case.example_input, "palette", default_case.palettes,
                      tmp_path / "p.onnx")
    ratio = pal.bytes / dense.bytes
    assert 0.24 <= ratio <= 0.30, ratio
    assert check_palette_file(pal.path, pal, dense_bytes=dense.bytes)["checked_tensors"] == len(default_case.palettes)


def test_palette_file_holds_at_most_k_codes_and_decodes_to_the_palette(tiny_case, tmp_path):
    exported = export_onnx(tiny_case.module, tiny_case.example_input, "palette", tiny_case.palettes,
                           tmp_path / "p.onnx")
    model = onnx.load(str(exported.path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert not any(t["initializer"] in inits for t in exported.tensors)  # dense copies are gone
    for t in exported.tensors:
        idx = inits[f"{t['initializer']}.palette_indices"]
        codebook = inits[f"{t['initializer']}.palette_codebook"]
        assert idx.dtype == np.uint8 and int(idx.max()) < t["clusters"]
        assert np.unique(idx).size <= t["clusters"] and codebook.size == t["groups"] * t["clusters"]
    int8 = export_onnx(tiny_case.module, tiny_case.example_input, "palette-int8", tiny_case.palettes_int8,
                       tmp_path / "q.onnx")
    inits8 = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(int8.path)).graph.initializer}
    for t in int8.tensors:
        for name, axis in t["int8_channel_axes"].items():
            q = np.moveaxis(inits8[name], axis, 0)
            assert q.dtype == np.int8
            assert max(np.unique(row).size for row in q.reshape(q.shape[0], -1)) <= t["clusters"]
    check_palette_file(int8.path, int8)


def test_grouped_palettes_round_trip(tiny_case, tmp_path):
    from tests.converters.conftest import simple_palettes

    pal = simple_palettes(tiny_case.module, clusters=16, group_size=8, min_elements=256)
    exported = export_onnx(tiny_case.module, tiny_case.example_input, "palette", pal, tmp_path / "g.onnx")
    assert all(t["groups"] > 1 for t in exported.tensors)
    ref = torch_outputs(palettized_reference(tiny_case.module, pal)[0], tiny_case.example_input.numpy())[0]
    np.testing.assert_allclose(run_onnx(exported.path, tiny_case.example_input.numpy()), ref, atol=1e-5)


def test_keep_palette_runs_the_decode_and_gives_the_same_outputs(tiny_case, tmp_path):
    exported = export_onnx(tiny_case.module, tiny_case.example_input, "palette", tiny_case.palettes,
                           tmp_path / "p.onnx")
    x = tiny_case.example_input.numpy()
    folded = run_onnx_outputs(exported.path, x)
    kept = run_onnx_outputs(exported.path, x, keep_palette=True)
    np.testing.assert_allclose(kept[0], folded[0], atol=1e-6)


def test_unplaceable_palettes_are_left_dense_and_named(tiny_case, tmp_path):
    pal = dict(tiny_case.palettes)
    good = pal["fc1.weight"]
    pal["no.such.weight"] = good
    exported = export_onnx(tiny_case.module, tiny_case.example_input, "palette", pal, tmp_path / "p.onnx")
    reasons = dict(exported.left_dense)
    assert "no parameter" in reasons["no.such.weight"]
    assert len(exported.tensors) == len(tiny_case.palettes)
    ref = torch_outputs(palettized_reference(tiny_case.module, tiny_case.palettes)[0], tiny_case.example_input.numpy())
    np.testing.assert_allclose(run_onnx(exported.path, tiny_case.example_input.numpy()), ref[0], atol=1e-4)


def test_palette_int8_refuses_palettes_without_a_scale(tiny_case, tmp_path):
    from converters.errors import ConfigError

    with pytest.raises(ConfigError, match="int8_grid"):
        export_onnx(tiny_case.module, tiny_case.example_input, "palette-int8", tiny_case.palettes, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_decode_matches_the_palettizer(default_case):
    for p in list(default_case.palettes.values())[:3]:
        if hasattr(p, "decode"):
            np.testing.assert_array_equal(decode_palette(p), p.decode())


@pytest.mark.slow
@pytest.mark.parametrize("case_name", ["deit_case", "conv_case"])
@pytest.mark.parametrize("mode", MODES)
def test_timm_round_trip(request, tmp_path, case_name, mode):
    case = request.getfixturevalue(case_name)
    bundle = _round_trip(case, tmp_path, mode)
    layouts = {t["layout"] for t in bundle.exported.tensors}
    if case_name == "deit_case" and mode != "dense":
        assert "transposed" in layouts  # Linear weights appear as MatMul B = W.T
    if case_name == "conv_case" and mode != "dense":
        assert any(t["folded_channel_scale"] for t in bundle.exported.tensors)  # Conv+BN folded


def _graph_with_weight_as_left_operand(opset: int):
    """y = W @ x with W [8, 16] a float initializer: no integer kernel takes a constant A operand."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["W", "x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 4])],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, w


@pytest.mark.parametrize("opset, form", [(17, "DequantizeLinear"), (11, "Cast+Mul")])
def test_int8_weights_without_an_integer_kernel_fall_back_to_weight_only(tmp_path, opset, form):
    from converters.onnx import rewrite_palettes
    from tests.converters.conftest import simple_palettes

    model, w = _graph_with_weight_as_left_operand(opset)

    import torch  # simple_palettes walks torch modules: build the palette from a Linear holding W

    lin = torch.nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    pal = simple_palettes(torch.nn.Sequential(lin), clusters=8, int8_grid=True, min_elements=1)
    palette = pal["0.weight"]
    ref_w = decode_palette(palette)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(ref_w, "W"))  # the file holds the decoded weight
    rewritten, stats, left = rewrite_palettes(model, {"0.weight": palette}, "palette-int8")
    assert left == [] and stats[0]["form"] == form and stats[0]["layout"] == "same"
    path = tmp_path / "m.onnx"
    onnx.save(rewritten, str(path))
    x = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, x), ref_w @ x, rtol=1e-5, atol=1e-5)
    inits = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    assert "W" not in inits and inits["W.int8"].dtype == np.int8


@pytest.mark.parametrize("mode", ["palette", "palette-int8"])
def test_weights_the_exporter_stores_once_are_palettized_once(tmp_path, mode):
    """Zero-initialised BatchNorm gammas (timm's zero_init_last) fold two convs into equal all-zero
    weights; the exporter keeps one initializer and an Identity. One palette is placed, the other
    is named in left_dense with the reason, and the file still matches PyTorch."""
    import torch
    from torch import nn

    from tests.converters.conftest import simple_palettes

    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
    with torch.no_grad():
        body[4].weight.zero_()
        body[7].weight.zero_()
    module = body.eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    pal = simple_palettes(module, clusters=16, int8_grid=mode == "palette-int8", min_elements=256)
    bundle = export_bundle(module, x, "onnx", mode, pal, tmp_path)
    left = dict(bundle.exported.left_dense)
    assert len(left) == 1 and "same initializer" in next(iter(left.values()))
    if mode == "palette-int8":
        assert {t["form"] for t in bundle.exported.tensors} == {"ConvInteger"}
