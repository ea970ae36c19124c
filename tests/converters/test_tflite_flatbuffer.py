"""The .tflite post-pass on small hand-built flatbuffers (fast: no litert-torch conversion).

Covers reading/writing (alignment, round trip in LiteRT), bad files (truncated, not TFLite,
missing), the palette and int8 rewrites checked against numpy, grouped codebooks, and an operator
the post-pass does not know (left dense and reported, the file still exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from converters import tflite_flatbuffer as fb
from converters.errors import ModelFileError
from converters.modes import ExportMode
from converters.tflite import apply_palettes, check_palette_invariants, locate_palettes
from pipeline.errors import ModelLoadError

IN, OUT = 64, 48


@dataclass
class NumpyPalette:
    """The Palette interface (pipeline.palettize) made with numpy: codebook (groups, k) + uint8 indices."""

    name: str
    shape: tuple
    codebook: np.ndarray
    indices: np.ndarray
    group_size: int | None = None
    scale: np.ndarray | None = None

    def group_of_channel(self) -> np.ndarray:
        c = self.shape[0]
        return np.zeros(c, np.int64) if self.group_size is None else np.arange(c) // self.group_size

    def decode(self) -> np.ndarray:
        rows = self.codebook[self.group_of_channel()]
        idx = self.indices.reshape(self.shape[0], -1).astype(np.int64)
        w = np.take_along_axis(rows, idx, axis=1)
        if self.scale is not None:
            w = w * self.scale[:, None]
        return w.reshape(self.shape).astype(np.float32)

    def int8_weights(self) -> tuple[np.ndarray, np.ndarray]:
        rows = self.codebook[self.group_of_channel()]
        q = np.take_along_axis(rows, self.indices.reshape(self.shape[0], -1).astype(np.int64), axis=1)
        return q.reshape(self.shape).astype(np.int8), self.scale.astype(np.float32)


def random_palette(
    name: str,
    shape: tuple,
    k: int = 16,
    group_size: int | None = None,
    int8_grid: bool = False,
    seed: int = 0,
) -> NumpyPalette:
    rng = np.random.default_rng(seed)
    groups = 1 if group_size is None else -(-shape[0] // group_size)
    if int8_grid:
        codebook = np.stack(
            [np.sort(rng.choice(np.arange(-127, 128), k, replace=False)) for _ in range(groups)]
        )
        scale = rng.uniform(0.001, 0.01, shape[0]).astype(np.float32)
    else:
        codebook = np.sort(rng.standard_normal((groups, k)), axis=1) * 0.1
        scale = None
    indices = rng.integers(0, k, shape).astype(np.uint8)
    return NumpyPalette(name, tuple(shape), codebook.astype(np.float32), indices, group_size, scale)


def fc_mul_model(weight: np.ndarray, gain: np.ndarray) -> bytes:
    """x[1,IN] -> FULLY_CONNECTED(weight [OUT,IN], bias) -> MUL(gain [1,OUT]) -> y[1,OUT]."""
    s = fb._schema()
    model = s.ModelT()
    model.version = 3
    model.description = "hand-built test model"
    model.buffers = [s.BufferT()]
    model.operatorCodes = []
    sg = s.SubGraphT()
    sg.tensors, sg.operators = [], []
    model.subgraphs = [sg]
    x = fb.add_tensor(model, 0, "x", (1, IN), "FLOAT32")
    w = fb.add_tensor(model, 0, "fc/weight", weight.shape, "FLOAT32", weight.astype(np.float32))
    b = fb.add_tensor(model, 0, "fc/bias", (OUT,), "FLOAT32", np.linspace(-1, 1, OUT).astype(np.float32))
    h = fb.add_tensor(model, 0, "fc/out", (1, OUT), "FLOAT32")
    g = fb.add_tensor(model, 0, "gain", gain.shape, "FLOAT32", gain.astype(np.float32))
    y = fb.add_tensor(model, 0, "y", (1, OUT), "FLOAT32")
    sg.inputs, sg.outputs = [x], [y]
    sg.operators.append(
        fb.make_op(
            model, "FULLY_CONNECTED", [x, w, b], [h], s.FullyConnectedOptionsT(), "FullyConnectedOptions"
        )
    )
    sg.operators.append(fb.make_op(model, "MUL", [h, g], [y], s.MulOptionsT(), "MulOptions"))
    return fb.tflite_to_bytes(model)


def run_bytes(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return np.array(interp.get_tensor(interp.get_output_details()[0]["index"]))


def numpy_forward(weight: np.ndarray, gain: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (x @ weight.T + np.linspace(-1, 1, OUT).astype(np.float32)) * gain


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((1, IN)).astype(np.float32)


def test_round_trip_runs_and_buffers_are_aligned(x, tmp_path):
    w = np.random.default_rng(0).standard_normal((OUT, IN)).astype(np.float32)
    gain = np.full((1, OUT), 2.0, np.float32)
    data = fc_mul_model(w, gain)
    assert data[4:8] == b"TFL3"
    np.testing.assert_allclose(run_bytes(data, x), numpy_forward(w, gain, x), rtol=1e-5, atol=1e-5)
    model = fb.parse_tflite_bytes(data, name="m")
    path = tmp_path / "m.tflite"
    size = fb.write_tflite(model, path)
    again = path.read_bytes()
    assert size == len(again)
    np.testing.assert_array_equal(run_bytes(again, x), run_bytes(data, x))
    # every non-empty buffer's data starts on a 16-byte boundary (schema: force_align 16)
    weight_bytes = w.tobytes()
    assert again.index(weight_bytes) % 16 == 0
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("cut", [0, 3, 7, 40, 0.5, 0.9])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    w = np.ones((OUT, IN), np.float32)
    data = fc_mul_model(w, np.ones((1, OUT), np.float32))
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[:n])
    with pytest.raises(ModelLoadError) as info:
        fb.read_tflite(path)
    assert isinstance(info.value, ModelFileError)
    assert "cut.tflite" in str(info.value)


def test_not_tflite_and_missing(tmp_path):
    onnxish = tmp_path / "model.tflite"
    onnxish.write_bytes(b"\x08\x07\x12\x04onnx" + b"\x00" * 100)
    with pytest.raises(ModelFileError, match="not a TFLite model.*TFL3"):
        fb.read_tflite(onnxish)
    with pytest.raises(ModelFileError, match="does not exist"):
        fb.read_tflite(tmp_path / "absent.tflite")


@pytest.mark.parametrize(
    "group_size,k,int8_grid", [(None, 16, False), (8, 16, False), (4, 64, False), (None, 16, True)]
)
def test_palette_rewrite_decodes_exactly(x, group_size, k, int8_grid):
    pal = random_palette("fc.weight", (OUT, IN), k=k, group_size=group_size, int8_grid=int8_grid)
    gain = np.full((1, OUT), 0.5, np.float32)
    w = pal.decode()
    model = fb.parse_tflite_bytes(fc_mul_model(w, gain), name="m")
    placements, left = locate_palettes(model, {"fc.weight": pal})
    assert left == [] and len(placements) == 1
    tensors, left = apply_palettes(model, placements, ExportMode.PALETTE)
    assert left == []
    data = fb.tflite_to_bytes(model)
    check_palette_invariants(data, tensors, ExportMode.PALETTE, name="m")
    np.testing.assert_allclose(run_bytes(data, x), numpy_forward(w, gain, x), rtol=1e-5, atol=1e-5)
    info = tensors[0]
    assert info["clusters"] == k and info["distinct_codes"] <= k
    # the dense weight is gone from the file; the uint8 indices are there
    assert w.tobytes() not in data
    reread = fb.parse_tflite_bytes(data, name="m")
    ops = [fb.op_name(reread, op) for op in reread.subgraphs[0].operators]
    assert ops[:2] == ["CAST", "ADD"] if info["groups"] * k > 256 else ops[0] == "CAST"
    assert "GATHER" in ops and ops[-2:] == ["FULLY_CONNECTED", "MUL"]


def test_weight_transposed_in_file_is_found(x):
    pal = random_palette("fc.weight", (IN, OUT), k=8)  # torch [IN, OUT] stored as [OUT, IN] in the file
    w = pal.decode().T.copy()
    gain = np.ones((1, OUT), np.float32)
    model = fb.parse_tflite_bytes(fc_mul_model(w, gain), name="m")
    placements, _ = locate_palettes(model, {"fc.weight": pal})
    assert [p.layout for p in placements] == ["IO"]
    tensors, _ = apply_palettes(model, placements, ExportMode.PALETTE)
    np.testing.assert_allclose(
        run_bytes(fb.tflite_to_bytes(model), x), numpy_forward(w, gain, x), rtol=1e-5, atol=1e-5
    )


def test_int8_rewrite_runs_hybrid_and_keeps_k_levels(x):
    pal = random_palette("fc.weight", (OUT, IN), k=16, int8_grid=True)
    gain = np.ones((1, OUT), np.float32)
    w = pal.decode()
    model = fb.parse_tflite_bytes(fc_mul_model(w, gain), name="m")
    placements, _ = locate_palettes(model, {"fc.weight": pal})
    tensors, left = apply_palettes(model, placements, ExportMode.PALETTE_INT8)
    assert left == []
    data = fb.tflite_to_bytes(model)
    check_palette_invariants(data, tensors, ExportMode.PALETTE_INT8, name="m")
    reread = fb.parse_tflite_bytes(data, name="m")
    t = next(t for t in reread.subgraphs[0].tensors if fb.tensor_name(t) == "fc/weight")
    assert fb.tensor_type_name(t.type) == "INT8"
    assert t.quantization.quantizedDimension == 0
    np.testing.assert_allclose(np.asarray(t.quantization.scale, np.float32), pal.scale, rtol=1e-7)
    q = fb.constant_array(reread, t)
    assert max(len(np.unique(row)) for row in q) <= 16
    np.testing.assert_array_equal(q, pal.int8_weights()[0])
    ref = numpy_forward(w, gain, x)
    out = run_bytes(data, x)
    # activations are quantized at run time: a few per cent of the output range, not more
    assert np.max(np.abs(out - ref)) < 0.05 * np.max(np.abs(ref))


def test_unknown_reader_is_left_dense_and_reported(x):
    pal_w = random_palette("fc.weight", (OUT, IN), k=16)
    pal_g = random_palette("gain", (1, OUT), k=4, seed=3)
    w, gain = pal_w.decode(), pal_g.decode()
    model = fb.parse_tflite_bytes(fc_mul_model(w, gain), name="m")
    placements, left = locate_palettes(model, {"fc.weight": pal_w, "gain": pal_g})
    assert left == [] and len(placements) == 2
    tensors, left = apply_palettes(model, placements, ExportMode.PALETTE)
    assert [t["name"] for t in tensors] == ["fc.weight"]
    assert len(left) == 1 and left[0][0] == "gain" and "MUL" in left[0][1]
    data = fb.tflite_to_bytes(model)
    assert gain.tobytes() in data  # left exactly as it was
    np.testing.assert_allclose(run_bytes(data, x), numpy_forward(w, gain, x), rtol=1e-5, atol=1e-5)


def test_unmatched_palette_is_reported_not_guessed():
    pal = random_palette("fc.weight", (OUT, IN), k=16)
    other = np.random.default_rng(9).standard_normal((OUT, IN)).astype(np.float32)
    model = fb.parse_tflite_bytes(fc_mul_model(other, np.ones((1, OUT), np.float32)), name="m")
    placements, left = locate_palettes(model, {"fc.weight": pal})
    assert placements == []
    assert left[0][0] == "fc.weight" and "no constant fp32 tensor" in left[0][1]


def test_batch_norm_style_channel_scale_is_folded_into_decode(x):
    pal = random_palette("fc.weight", (OUT, IN), k=16)
    factors = np.random.default_rng(4).uniform(0.5, 2.0, OUT).astype(np.float32)
    w_file = pal.decode() * factors[:, None]  # what a converter writes after folding a norm
    gain = np.ones((1, OUT), np.float32)
    model = fb.parse_tflite_bytes(fc_mul_model(w_file, gain), name="m")
    placements, left = locate_palettes(model, {"fc.weight": pal})
    assert left == [] and placements[0].channel_scale is not None
    for mode in (ExportMode.PALETTE, ExportMode.PALETTE_INT8):
        if mode is ExportMode.PALETTE_INT8:
            pal = random_palette("fc.weight", (OUT, IN), k=16, int8_grid=True)
            w_file = pal.decode() * factors[:, None]
        m = fb.parse_tflite_bytes(fc_mul_model(w_file, gain), name="m")
        placements, _ = locate_palettes(m, {"fc.weight": pal})
        apply_palettes(m, placements, mode)
        ref = numpy_forward(w_file, gain, x)
        tol = 1e-4 if mode is ExportMode.PALETTE else 0.05 * np.max(np.abs(ref))
        assert np.max(np.abs(run_bytes(fb.tflite_to_bytes(m), x) - ref)) <= tol


# -- tflite:<path> sources on the hand-built file (real palettizer, no conversion) ----------------


@pytest.mark.parametrize("mode", ["palette", "palette-int8"])
def test_file_source_palettizes_fc_weight(tmp_path, x, mode):
    from converters.tflite import palettize_tflite_file
    from pipeline.palettize import PalettizeConfig

    w = np.random.default_rng(0).standard_normal((OUT, IN)).astype(np.float32)
    gain = np.full((1, OUT), 2.0, np.float32)
    src = tmp_path / "dense.tflite"
    src.write_bytes(fc_mul_model(w, gain))
    config = PalettizeConfig(clusters=16, weight_threshold=1024, int8_grid=mode == "palette-int8")
    out = tmp_path / "pal.tflite"
    exported = palettize_tflite_file(src, config, out)
    assert exported.mode.value == mode and out.is_file()
    assert [t["file_tensors"] for t in exported.tensors] == [["fc/weight"]]
    assert exported.tensors[0]["distinct_codes"] <= 16
    assert exported.bytes < src.stat().st_size
    ref = numpy_forward(w, gain, x)
    got = run_bytes(out.read_bytes(), x)
    # 16 clusters of a normal weight (~20 dB SQNR): close to the dense outputs, not equal to them
    assert np.max(np.abs(got - ref)) < 0.25 * np.max(np.abs(ref))
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.97
    assert not np.array_equal(got, ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.tflite", "pal.tflite"]


def test_file_source_bad_requests(tmp_path):
    from converters.tflite import palettize_tflite_file
    from pipeline.errors import ConfigError, NothingToDoError
    from pipeline.palettize import PalettizeConfig

    src = tmp_path / "dense.tflite"
    src.write_bytes(fc_mul_model(np.ones((OUT, IN), np.float32), np.ones((1, OUT), np.float32)))
    with pytest.raises(ConfigError, match="int8_grid"):
        palettize_tflite_file(
            src, PalettizeConfig(weight_threshold=1024), tmp_path / "o.tflite", mode="palette-int8"
        )
    with pytest.raises(ConfigError, match="already dense"):
        palettize_tflite_file(
            src, PalettizeConfig(weight_threshold=1024), tmp_path / "o.tflite", mode="dense"
        )
    with pytest.raises(NothingToDoError, match="dense.tflite.*100000"):
        palettize_tflite_file(src, PalettizeConfig(weight_threshold=100000), tmp_path / "o.tflite")
    assert not (tmp_path / "o.tflite").exists()


@pytest.mark.parametrize("mode", [ExportMode.PALETTE, ExportMode.PALETTE_INT8])
def test_layer_norm_gamma_folded_on_input_channels(x, mode):
    """Converters fold a preceding LayerNorm's gamma into the next weight's input columns."""
    pal = random_palette("fc.weight", (OUT, IN), k=16, int8_grid=mode is ExportMode.PALETTE_INT8)
    gamma = np.random.default_rng(5).uniform(0.3, 1.7, IN).astype(np.float32)
    w_file = pal.decode() * gamma[None, :]
    gain = np.ones((1, OUT), np.float32)
    model = fb.parse_tflite_bytes(fc_mul_model(w_file, gain), name="m")
    placements, left = locate_palettes(model, {"fc.weight": pal})
    assert left == [] and placements[0].input_scale is not None and placements[0].channel_scale is None
    tensors, left = apply_palettes(model, placements, mode)
    assert left == [] and tensors[0]["folded_factor"] == "input"
    data = fb.tflite_to_bytes(model)
    check_palette_invariants(data, tensors, mode, name="m")
    ref = numpy_forward(w_file, gain, x)
    out = run_bytes(data, x)
    if mode is ExportMode.PALETTE:
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    else:  # weight stays per-output-channel int8; gamma multiplies the activation (one MUL)
        ops = [fb.op_name(model, op) for op in model.subgraphs[0].operators]
        assert ops == ["MUL", "FULLY_CONNECTED", "MUL"]
        assert np.max(np.abs(out - ref)) < 0.05 * np.max(np.abs(ref))
