"""Export to TFLite in the three export modes, and palettize existing ``.tflite`` files.

Why a post-pass: every TFLite converter (TFLiteConverter, litert-torch, onnx2tf) constant-folds a
Gather of constants back into a dense float weight, so a palette cannot survive conversion. The
PyTorch model is converted dense with litert-torch; then each palettized weight is found in the
flatbuffer by value (under the layouts the converter uses: FULLY_CONNECTED [out, in], CONV_2D OHWI,
DEPTHWISE_CONV_2D [1, H, W, C_out]) and replaced:

* ``palette``: a uint8 index tensor + fp32 codebook, decoded on every inference by
  CAST(uint8->int32) -> [ADD group offsets] -> GATHER(codebook) [-> MUL per-channel scale], giving
  the decoded weight tensor (consumers are unchanged).
* ``palette-int8``: the weight becomes a standard per-channel symmetric int8 tensor (scale per
  output channel, zero point 0), which LiteRT runs with its hybrid (dynamic-range) kernels for
  FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D. Each channel holds at most k distinct levels.

Converters fold neighbouring norms into weights: a following batch norm scales the output channels,
a preceding LayerNorm's gamma the input channels. Such a weight is matched as a per-channel multiple
of the palette; ``palette`` decodes with a MUL by the factor, ``palette-int8`` keeps output factors
in the int8 scales and multiplies the operator's input activation by an input factor. Because a
folded LayerNorm beta also changes the bias by ``W @ beta``, the palettized PyTorch model itself is
converted whenever the dense conversion cannot be reused exactly (see :func:`export_tflite`).

A weight that cannot be found, or that is read by an operator the post-pass does not handle, is
left dense and reported in ``ExportedFile.left_dense``; it is never corrupted. Every file is
verified in the LiteRT interpreter against PyTorch (or, for ``tflite:`` sources, the input file with
decoded weights) before it is renamed to its final name.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters import tflite_flatbuffer as fb
from converters.errors import ExportError, ExportVerificationError, PaletteFileError
from converters.modes import ExportedFile, ExportFormat, ExportMode, parse_mode, target_for
from pipeline.errors import ConfigError

#: Operators whose weight input may come from a decode (the decoded tensor equals the fp32 weight).
PALETTE_CONSUMERS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"})

#: (operator, input position) -> output-channel axis of the weight, for hybrid int8 kernels.
INT8_WEIGHT_AXIS = {("FULLY_CONNECTED", 1): 0, ("CONV_2D", 1): 0, ("DEPTHWISE_CONV_2D", 1): 3}

#: Layouts a PyTorch weight may take in a converted file, as permutations of the torch axes.
#: The output-channel axis in the file is ``perm.index(0)``.
_LAYOUTS: dict[int, list[tuple[str, tuple[int, ...]]]] = {
    2: [("OI", (0, 1)), ("IO", (1, 0))],
    3: [("OIW", (0, 1, 2)), ("OWI", (0, 2, 1)), ("IWO", (1, 2, 0))],
    4: [("OHWI", (0, 2, 3, 1)), ("IHWO", (1, 2, 3, 0)), ("OIHW", (0, 1, 2, 3)), ("HWIO", (2, 3, 1, 0))],
}

#: How a left_dense reason starts when a palette's weight is not in the converted file at all.
NOT_FOUND = "no constant fp32 tensor"

#: Relative tolerance (of the tensor's range) when a weight is matched by value, not bit for bit.
MATCH_RTOL = 1e-7


@dataclass
class Placement:
    """One weight tensor in the flatbuffer that will carry a palette."""

    palette: Any
    subgraph: int
    tensor: int
    layout: str
    perm: tuple[int, ...]
    uses: list[fb.Use] = field(default_factory=list)
    #: Per-output-channel factor the converter folded into the weight (batch norm), or None.
    channel_scale: np.ndarray | None = None
    #: Per-input-channel factor the converter folded into the weight (a preceding LayerNorm's gamma),
    #: or None. Palette mode multiplies the decoded weight by it; palette-int8 multiplies the
    #: operator's input activation instead, so the weight stays per-output-channel int8.
    input_scale: np.ndarray | None = None

    @property
    def channel_axis(self) -> int:
        return self.perm.index(0)

    @property
    def input_axis(self) -> int | None:
        return self.perm.index(1) if len(self.perm) > 1 else None


# ---------------------------------------------------------------------------------------------
# conversion


#: Recent conversions: (module fingerprint) -> bytes. A CLI exporting three modes of one model converts
#: it once (litert-torch takes tens of seconds); the fingerprint covers every weight and buffer.
_CONVERSIONS: OrderedDict[tuple, bytes] = OrderedDict()
_CONVERSION_CACHE_SIZE = 2


def _fingerprint(module: Any, example_input: Any) -> tuple | None:
    """Identity + weights + input shape, or None when some state cannot be hashed (no caching)."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    try:
        for name, tensor in list(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(name.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    except (RuntimeError, TypeError, AttributeError):
        return None
    return (
        id(module),
        type(module).__qualname__,
        digest.hexdigest(),
        tuple(example_input.shape),
        str(example_input.dtype),
    )


def cached_conversion(module: Any, example_input: Any) -> bytes | None:
    """The dense conversion of ``module`` when one is in the cache, else None (never converts)."""
    key = _fingerprint(module, example_input)
    return _CONVERSIONS.get(key) if key is not None else None


def convert_pytorch(module: Any, example_input: Any) -> bytes:
    """Dense PyTorch -> TFLite bytes with litert-torch (inputs stay NCHW as in PyTorch).

    The last two conversions are kept, keyed by the module's identity, weights and input shape.
    """
    key = _fingerprint(module, example_input)
    if key is None:
        return _convert_uncached(module, example_input)
    if key in _CONVERSIONS:
        _CONVERSIONS.move_to_end(key)
        return _CONVERSIONS[key]
    data = _convert_uncached(module, example_input)
    _CONVERSIONS[key] = data
    while len(_CONVERSIONS) > _CONVERSION_CACHE_SIZE:
        _CONVERSIONS.popitem(last=False)
    return data


def _convert_uncached(module: Any, example_input: Any) -> bytes:
    try:
        import litert_torch
    except ImportError as exc:  # pragma: no cover - litert-torch is a dependency
        from converters.errors import ExportUnavailableError

        raise ExportUnavailableError(
            "litert-torch is not installed, so PyTorch models cannot be converted to TFLite",
            next_step="pip install litert-torch",
        ) from exc
    module = module.eval()
    # litert-torch prints a progress tree to stdout; keep CLI tables clean unless the user asked for it.
    quiet = "LITERT_TORCH_SHOW_PROGRESS" not in os.environ
    if quiet:
        os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        edge = litert_torch.convert(module, (example_input,))
        data = edge.model_content()
    except Exception as exc:
        raise ExportError(
            f"litert-torch could not convert the model to TFLite ({type(exc).__name__}: {str(exc)[:400]})",
            next_step="Check that the model runs under torch.export with this input shape, or export "
            "ONNX only (--formats onnx).",
        ) from exc
    finally:
        if quiet:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
    return bytes(data)


def decoded_module(module: Any, palettes: dict[str, Any] | None) -> Any:
    """A copy of ``module`` whose palettized weights are replaced by ``palette.decode()``."""
    import torch

    if not palettes:
        return module
    out = copy.deepcopy(module).eval()
    params = dict(out.named_parameters())
    for name, pal in palettes.items():
        if name not in params:
            raise ConfigError(
                f"palette {name!r} names no parameter of the model",
                next_step="Palettize this same model again.",
                palette=name,
            )
        with torch.no_grad():
            params[name].copy_(
                torch.from_numpy(np.asarray(pal.decode(), dtype=np.float32)).reshape(params[name].shape)
            )
    return out


# ---------------------------------------------------------------------------------------------
# locating palettes in the flatbuffer


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()


def locate_palettes(
    model: Any, palettes: dict[str, Any], originals: dict[str, np.ndarray] | None = None
) -> tuple[list[Placement], list[tuple[str, str]]]:
    """Find each palette's weight among the file's constant fp32 tensors, by value.

    A palette is looked for by the model's own weight (``originals``, when the file was converted from
    the un-palettized model) and by its decoded weight, under every known layout. Returns the
    placements and the palettes left dense with the reason.
    """
    originals = originals or {}
    wanted_sizes = {int(np.prod(p.shape)) for p in palettes.values()}
    by_digest: dict[tuple[tuple[int, ...], bytes], list[tuple[int, int]]] = {}
    by_size: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    f32 = fb.tensor_type("FLOAT32")
    for si, sg in enumerate(model.subgraphs):
        for ti, t in enumerate(sg.tensors or []):
            if int(t.type) != f32 or int(np.prod(t.shape, dtype=np.int64)) not in wanted_sizes:
                continue
            arr = fb.constant_array(model, t)
            if arr is None:
                continue
            by_digest.setdefault((arr.shape, _digest(arr)), []).append((si, ti))
            by_size.setdefault(arr.size, []).append((si, ti, arr))

    placements: list[Placement] = []
    left: list[tuple[str, str]] = []
    claimed: dict[tuple[int, int], str] = {}
    for name in sorted(palettes):
        pal = palettes[name]
        refs = []
        if name in originals:
            refs.append(np.asarray(originals[name], dtype=np.float32).reshape(pal.shape))
        refs.append(np.asarray(pal.decode(), dtype=np.float32).reshape(pal.shape))
        layouts = _LAYOUTS.get(len(pal.shape), [("as-is", tuple(range(len(pal.shape))))])
        found: dict[tuple[int, int], tuple] = {}
        for ref in refs:
            for label, perm in layouts:
                arr = np.ascontiguousarray(ref.transpose(perm))
                for key in by_digest.get((arr.shape, _digest(arr)), []):
                    found.setdefault(key, (label, perm, None, None))
        if not found:  # not bit-equal: a per-output-channel multiple (batch norm folded by the converter)
            for ref in refs:
                for label, perm in layouts:
                    arr = ref.transpose(perm)
                    for si, ti, cand in by_size.get(arr.size, []):
                        if (si, ti) in found or cand.shape != arr.shape:
                            continue
                        scale = channel_multiple(cand, arr, perm.index(0))
                        if scale is not None:
                            unit = bool(np.all(np.abs(scale - 1.0) <= MATCH_RTOL))
                            found[(si, ti)] = (label, perm, None if unit else scale, None)
                            continue
                        in_axis = perm.index(1) if len(perm) > 1 else None
                        if in_axis is not None and arr.shape[in_axis] > 1:
                            scale = channel_multiple(cand, arr, in_axis)
                            if scale is not None:
                                found[(si, ti)] = (label, perm, None, scale)
        if not found:
            left.append(
                (
                    name,
                    NOT_FOUND + " in the converted file equals this weight under the "
                    "known layouts (OI, IO, OHWI, IHWO, HWIO); the converter may have folded it "
                    "into another constant",
                )
            )
            continue
        for key, (label, perm, scale, in_scale) in sorted(found.items(), key=lambda kv: kv[0]):
            if key in claimed:
                left.append(
                    (
                        name,
                        f"its values equal those of {claimed[key]!r}, which already holds "
                        f"tensor {fb.tensor_name(model.subgraphs[key[0]].tensors[key[1]])!r}",
                    )
                )
                continue
            claimed[key] = name
            placements.append(
                Placement(pal, key[0], key[1], label, perm, channel_scale=scale, input_scale=in_scale)
            )
    return placements, left


def channel_multiple(candidate: np.ndarray, reference: np.ndarray, axis: int) -> np.ndarray | None:
    """Per-channel factors ``s`` with ``candidate == reference * s`` along ``axis`` (within
    ``MATCH_RTOL`` x 10 of the candidate's range), or None. Converters fold a following batch norm
    into a convolution's weight this way; the palette then decodes with a MUL by ``s``."""
    c = np.moveaxis(candidate.astype(np.float64), axis, 0).reshape(candidate.shape[axis], -1)
    r = np.moveaxis(reference.astype(np.float64), axis, 0).reshape(reference.shape[axis], -1)
    rr = np.einsum("ij,ij->i", r, r)
    zero = rr == 0
    if np.any(np.abs(c[zero]) > 0):  # an all-zero reference channel must stay all zero
        return None
    factors = np.where(zero, 1.0, np.einsum("ij,ij->i", c, r) / np.where(zero, 1.0, rr))
    if not np.all(np.isfinite(factors)) or np.any(factors == 0):
        return None
    limit = 10 * MATCH_RTOL * max(float(np.max(np.abs(c))), 1e-30)
    if float(np.max(np.abs(c - r * factors[:, None]))) > limit:
        return None
    return factors.astype(np.float32)


def _check_uses(
    model: Any, placements: list[Placement], mode: ExportMode
) -> tuple[list[Placement], list[tuple[str, str]]]:
    """Keep placements whose every reader the post-pass handles for ``mode``; report the rest."""
    uses = fb.tensor_uses(model)
    keep: list[Placement] = []
    left: list[tuple[str, str]] = []
    for pl in placements:
        sg = model.subgraphs[pl.subgraph]
        tname = fb.tensor_name(sg.tensors[pl.tensor])
        pl.uses = uses.get((pl.subgraph, pl.tensor), [])
        if not pl.uses:
            left.append((pl.palette.name, f"tensor {tname!r} is read by no operator"))
            continue
        if pl.tensor in sg.outputs or pl.tensor in sg.inputs:
            left.append((pl.palette.name, f"tensor {tname!r} is a subgraph input or output"))
            continue
        if mode is ExportMode.PALETTE_INT8:
            bad = [u for u in pl.uses if INT8_WEIGHT_AXIS.get((u.op, u.input_pos)) != pl.channel_axis]
            if bad:
                u = bad[0]
                if (u.op, u.input_pos) in INT8_WEIGHT_AXIS:
                    why = (
                        f"tensor {tname!r} is the weight of {u.op} but its output channels lie on axis "
                        f"{pl.channel_axis} (layout {pl.layout}), not the axis the int8 kernel reads"
                    )
                else:
                    why = (
                        f"tensor {tname!r} is read by {u.op} (input {u.input_pos}), which has no "
                        "per-channel int8 weight form the post-pass handles; left as fp32"
                    )
                left.append((pl.palette.name, why))
                continue
        else:
            bad = [u for u in pl.uses if u.op not in PALETTE_CONSUMERS]
            if bad:
                left.append(
                    (
                        pl.palette.name,
                        f"tensor {tname!r} is read by {bad[0].op}, which the post-pass "
                        "does not handle; left as fp32",
                    )
                )
                continue
        keep.append(pl)
    return keep, left


# ---------------------------------------------------------------------------------------------
# rewriting


def _channel_shape(rank: int, axis: int, channels: int) -> list[int]:
    shape = [1] * rank
    shape[axis] = channels
    return shape


def _group_rows(pal: Any, channels: int) -> np.ndarray:
    if hasattr(pal, "group_of_channel"):
        return np.asarray(pal.group_of_channel(), dtype=np.int64).reshape(-1)
    if pal.group_size:
        return np.arange(channels) // int(pal.group_size)
    return np.zeros(channels, dtype=np.int64)


def _apply_palette(model: Any, pl: Placement) -> dict:
    """Replace one constant weight with indices + codebook decoded by CAST/[ADD]/GATHER/[MUL]."""
    s = fb._schema()
    pal = pl.palette
    sg = model.subgraphs[pl.subgraph]
    target = sg.tensors[pl.tensor]
    wname = fb.tensor_name(target)
    shape = tuple(int(d) for d in target.shape)
    axis = pl.channel_axis
    codebook = np.asarray(pal.codebook, dtype=np.float32)
    codebook = codebook.reshape(1, -1) if codebook.ndim == 1 else codebook
    groups, k = codebook.shape
    idx = np.ascontiguousarray(np.asarray(pal.indices, dtype=np.uint8).reshape(pal.shape).transpose(pl.perm))
    channels = shape[axis]
    rows = _group_rows(pal, channels)
    offsets_b = (rows * k).astype(np.int64).reshape(_channel_shape(len(shape), axis, channels))
    ops = []
    form = ["cast", "gather"]
    if groups > 1 and groups * k <= 256:
        idx = (idx.astype(np.int64) + offsets_b).astype(np.uint8)  # global codebook row in one byte
        need_add = False
    else:
        need_add = groups > 1
    i_idx = fb.add_tensor(model, pl.subgraph, f"{wname};palette_indices", shape, "UINT8", idx)
    i_cast = fb.add_tensor(model, pl.subgraph, f"{wname};palette_indices_i32", shape, "INT32")
    ops.append(
        fb.make_op(
            model,
            "CAST",
            [i_idx],
            [i_cast],
            s.CastOptionsT(inDataType=fb.tensor_type("UINT8"), outDataType=fb.tensor_type("INT32"))
            if hasattr(s, "CastOptionsT")
            else None,
            "CastOptions",
        )
    )
    gather_in = i_cast
    extra_bytes = 0
    if need_add:
        off = offsets_b.astype(np.int32)
        i_off = fb.add_tensor(model, pl.subgraph, f"{wname};palette_group_offsets", off.shape, "INT32", off)
        i_sum = fb.add_tensor(model, pl.subgraph, f"{wname};palette_rows", shape, "INT32")
        ops.append(fb.make_op(model, "ADD", [i_cast, i_off], [i_sum], s.AddOptionsT(), "AddOptions"))
        gather_in = i_sum
        extra_bytes += off.nbytes
        form.insert(1, "add")
    flat = np.ascontiguousarray(codebook.reshape(-1))
    i_cb = fb.add_tensor(model, pl.subgraph, f"{wname};palette_codebook", flat.shape, "FLOAT32", flat)
    scale = getattr(pal, "scale", None)
    if pl.channel_scale is not None:
        scale = pl.channel_scale if scale is None else np.asarray(scale, np.float32) * pl.channel_scale
    # GATHER -> [MUL per output channel] -> [MUL per input channel] -> the weight tensor
    factors = []
    if scale is not None:
        factors.append(
            ("scale", np.asarray(scale, np.float32).reshape(_channel_shape(len(shape), axis, channels)))
        )
    if pl.input_scale is not None:
        ia = pl.input_axis
        factors.append(("input_scale", pl.input_scale.reshape(_channel_shape(len(shape), ia, shape[ia]))))
    outs = [fb.add_tensor(model, pl.subgraph, f"{wname};palette_{n}d", shape, "FLOAT32") for n, _ in factors]
    outs.append(pl.tensor)
    ops.append(
        fb.make_op(model, "GATHER", [i_cb, gather_in], [outs[0]], s.GatherOptionsT(axis=0), "GatherOptions")
    )
    for j, (fname, f) in enumerate(factors):
        i_f = fb.add_tensor(model, pl.subgraph, f"{wname};palette_{fname}", f.shape, "FLOAT32", f)
        ops.append(fb.make_op(model, "MUL", [outs[j], i_f], [outs[j + 1]], s.MulOptionsT(), "MulOptions"))
        extra_bytes += f.nbytes
        form.append("mul")
    if pl.channel_scale is not None or pl.input_scale is not None:
        form.append("folded")  # the converter folded a norm's per-channel factor into the weight
    dense_bytes = int(np.prod(shape)) * 4
    fb.detach_constant(model, pl.subgraph, pl.tensor)
    first_use = min(u.op_index for u in pl.uses)
    fb.insert_ops(model, pl.subgraph, first_use, ops)
    return {
        "name": pal.name,
        "file_tensors": [wname],
        "index_tensor": f"{wname};palette_indices",
        "shape": list(shape),
        "clusters": int(k),
        "groups": int(groups),
        "distinct_codes": int(len(np.unique(pal.indices))),
        "layout": pl.layout,
        "channel_axis": axis,
        "form": "-".join(form),
        "folded_factor": _folded(pl),
        "readers": sorted({u.op for u in pl.uses}),
        "dense_bytes": dense_bytes,
        "file_bytes": int(idx.nbytes + flat.nbytes + extra_bytes),
    }


def _folded(pl: Placement) -> str | None:
    """Which per-channel factor the converter had folded into this weight: output, input or none."""
    if pl.input_scale is not None:
        return "input"
    return "output" if pl.channel_scale is not None else None


def _int8_levels(pal: Any) -> tuple[np.ndarray, np.ndarray]:
    """(int8 q in torch layout, float32 scale per output channel) of an int8-grid palette."""
    if hasattr(pal, "int8_weights"):
        q, scale = pal.int8_weights()
    else:  # the Palette interface spelled out: weight = codebook[group(c), idx] * scale[c]
        rows = _group_rows(pal, pal.shape[0])
        idx = np.asarray(pal.indices).reshape(pal.shape[0], -1).astype(np.int64)
        codebook = np.asarray(pal.codebook)
        q = np.take_along_axis(codebook.reshape(-1, codebook.shape[-1])[rows], idx, axis=1)
        scale = pal.scale
    q = np.asarray(q, dtype=np.float64)
    if np.any(q != np.rint(q)) or np.any(np.abs(q) > 127):
        raise ConfigError(
            f"palette {pal.name!r} is not on the int8 grid (codebook values must be integers in [-127, 127])",
            next_step="Palettize with int8_grid=True.",
            palette=pal.name,
        )
    return q.astype(np.int8).reshape(pal.shape), np.asarray(scale, dtype=np.float32).reshape(-1)


def _apply_int8(model: Any, pl: Placement) -> dict:
    """Store the palette as per-channel int8 (values q * scale; at most k levels per channel)."""
    pal = pl.palette
    if getattr(pal, "scale", None) is None:
        raise ConfigError(
            f"palette {pal.name!r} has no per-channel scale, so it cannot be stored as int8",
            next_step="Palettize with int8_grid=True for the palette-int8 mode.",
            palette=pal.name,
        )
    q, scale = _int8_levels(pal)
    q = np.ascontiguousarray(q.reshape(pal.shape).transpose(pl.perm))
    target = model.subgraphs[pl.subgraph].tensors[pl.tensor]
    wname = fb.tensor_name(target)
    scale = np.asarray(scale, np.float32)
    if pl.channel_scale is not None:  # batch norm folded into this weight by the converter
        scale = scale * pl.channel_scale
    fb.set_int8_per_channel(model, pl.subgraph, pl.tensor, q, scale, pl.channel_axis)
    extra = 0
    if pl.input_scale is not None:
        # A preceding norm's gamma was folded into the weight's input channels; per-output int8
        # cannot hold that, so the operator's input activation is multiplied by it instead.
        s = fb._schema()
        sg = model.subgraphs[pl.subgraph]
        gamma = np.asarray(pl.input_scale, np.float32).reshape(-1)
        i_gamma = fb.add_tensor(model, pl.subgraph, f"{wname};input_scale", gamma.shape, "FLOAT32", gamma)
        extra += gamma.nbytes
        for use in sorted(pl.uses, key=lambda u: u.op_index, reverse=True):
            op = sg.operators[use.op_index]
            act = sg.tensors[op.inputs[0]]
            i_scaled = fb.add_tensor(
                model, pl.subgraph, f"{fb.tensor_name(act)};scaled_for;{wname}", tuple(act.shape), "FLOAT32"
            )
            if act.shapeSignature is not None:
                sg.tensors[i_scaled].shapeSignature = list(act.shapeSignature)
            mul = fb.make_op(model, "MUL", [op.inputs[0], i_gamma], [i_scaled], s.MulOptionsT(), "MulOptions")
            op.inputs[0] = i_scaled
            fb.insert_ops(model, pl.subgraph, use.op_index, [mul])
    moved = np.moveaxis(q, pl.channel_axis, 0).reshape(q.shape[pl.channel_axis], -1)
    per_channel = max(len(np.unique(row)) for row in moved)
    codebook = np.asarray(pal.codebook)
    return {
        "name": pal.name,
        "file_tensors": [wname],
        "shape": list(q.shape),
        "clusters": int(codebook.shape[-1]),
        "groups": int(codebook.reshape(-1, codebook.shape[-1]).shape[0]),
        "distinct_codes": int(per_channel),
        "layout": pl.layout,
        "channel_axis": pl.channel_axis,
        "folded_factor": _folded(pl),
        "form": "int8-per-channel"
        + ("-folded" if pl.channel_scale is not None else "")
        + ("-input-mul" if pl.input_scale is not None else ""),
        "readers": sorted({u.op for u in pl.uses}),
        "dense_bytes": int(q.size) * 4,
        "file_bytes": int(q.size + 4 * len(np.ravel(scale)) + extra),
    }


def apply_palettes(
    model: Any, placements: list[Placement], mode: ExportMode
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Rewrite ``model`` in place for every placement whose readers are handled; report the rest."""
    keep, left = _check_uses(model, placements, mode)
    tensors: list[dict] = []
    # Latest first, so operator indices of earlier placements stay valid while ops are inserted.
    for pl in sorted(keep, key=lambda p: (p.subgraph, min(u.op_index for u in p.uses)), reverse=True):
        tensors.append(
            _apply_int8(model, pl) if mode is ExportMode.PALETTE_INT8 else _apply_palette(model, pl)
        )
    tensors.sort(key=lambda d: d["name"])
    return tensors, left


# ---------------------------------------------------------------------------------------------
# checks


def check_palette_invariants(data: bytes, tensors: list[dict], mode: ExportMode, *, name: str) -> None:
    """Read the written bytes back: at most k distinct codes per tensor (per group / per channel)."""
    model = fb.parse_tflite_bytes(data, name=name)
    by_name = {}
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            by_name[fb.tensor_name(t)] = t
    problems = []
    for info in tensors:
        k = info["clusters"]
        if mode is ExportMode.PALETTE_INT8:
            t = by_name.get(info["file_tensors"][0])
            q = None if t is None else fb.constant_array(model, t)
            if q is None or q.dtype != np.int8:
                problems.append(f"{info['name']}: int8 weight tensor missing from the file")
                continue
            moved = np.moveaxis(q, info["channel_axis"], 0).reshape(q.shape[info["channel_axis"]], -1)
            worst = max(len(np.unique(row)) for row in moved)
            if worst > k:
                problems.append(f"{info['name']}: {worst} distinct int8 values in one channel > {k}")
        else:
            t = by_name.get(info["index_tensor"])
            idx = None if t is None else fb.constant_array(model, t)
            if idx is None:
                problems.append(f"{info['name']}: index tensor missing from the file")
                continue
            axis = info["channel_axis"]
            moved = np.moveaxis(idx, axis, 0)
            groups = info["groups"]
            if groups == 1:
                worst = len(np.unique(idx))
            else:  # rows may hold global codebook positions; count per output channel's group
                per = max(1, moved.shape[0] // groups)
                worst = max(len(np.unique(moved[c : c + per])) for c in range(0, moved.shape[0], per))
            if worst > k:
                problems.append(f"{info['name']}: {worst} distinct codes > {k} clusters")
    if problems:
        raise PaletteFileError(
            f"{name} breaks the palette invariants: " + "; ".join(problems),
            next_step="This is a bug in the TFLite post-pass; please report it.",
            problems=problems,
        )


def compare_outputs(
    outputs: list[np.ndarray],
    references: list[np.ndarray],
    mode: ExportMode,
    *,
    what: str,
    reference_name: str,
) -> dict:
    """Check every output against its reference with the TFLite target's tolerance for ``mode``.

    Raises one :class:`ExportVerificationError` listing every mismatching output.
    """
    target = target_for(ExportFormat.TFLITE, mode)
    tol = target.tolerance
    if len(outputs) != len(references):
        raise ExportVerificationError(
            f"{what} has {len(outputs)} outputs, {reference_name} has {len(references)}",
            next_step="This is a bug in the exporter.",
        )
    mismatches, worst = [], 0.0
    for i, (out, ref) in enumerate(zip(outputs, references, strict=True)):
        out = np.asarray(out, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if out.shape != ref.shape:
            mismatches.append({"output": i, "problem": f"shape {out.shape} != {ref.shape}"})
            continue
        diff = np.abs(out - ref)
        bound = tol.bound(ref)
        worst = max(worst, float(diff.max(initial=0.0)))
        if not np.all(diff <= bound) or not np.all(np.isfinite(out)):
            where = int(np.argmax(diff - bound))
            mismatches.append(
                {
                    "output": i,
                    "max_abs_diff": float(diff.max()),
                    "atol": tol.effective_atol(ref),
                    "rtol": tol.rtol,
                    "where": where,
                }
            )
    if mismatches:
        lines = "; ".join(
            f"output {m['output']}: "
            + (
                m["problem"]
                if "problem" in m
                else f"max |diff| {m['max_abs_diff']:.3g} > atol {m['atol']:.3g} "
                f"+ rtol {m['rtol']:.3g}*|ref| (flat index {m['where']})"
            )
            for m in mismatches
        )
        raise ExportVerificationError(
            f"{what} does not match {reference_name} ({target.name()}): {lines}",
            next_step="The file was not written. Re-run with --debug and report it if the model is "
            "supported.",
            mismatches=mismatches,
        )
    return {"max_abs_diff": worst, "atol": tol.effective_atol(np.asarray(references[0])), "rtol": tol.rtol}


def _run_file(path: Path, x: np.ndarray, threads: int) -> list[np.ndarray]:
    from converters.runtimes import tflite_runner

    return tflite_runner(path, threads=threads)(x)


def _torch_outputs(module: Any, example_input: Any) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(example_input)
    flat = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o.detach().cpu().numpy() for o in flat]


def _max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(
        (
            float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
            for x, y in zip(a, b, strict=True)
        ),
        default=0.0,
    )


def _finish(data: bytes, out_path: Path, verify: Any) -> Path:
    """Write to a temp name beside ``out_path``, run ``verify(temp_path)``, then rename."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=".tflite.part", dir=out_path.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        verify(tmp_path)
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return out_path


def _post_pass(
    data: bytes, palettes: dict[str, Any], mode: ExportMode, originals: dict | None, out_path: Path
) -> tuple[bytes, list[dict], list[tuple[str, str]]]:
    model = fb.parse_tflite_bytes(data, name="litert-torch output")
    placements, left = locate_palettes(model, palettes, originals)
    tensors, left_uses = apply_palettes(model, placements, mode)
    out = fb.tflite_to_bytes(model)
    check_palette_invariants(out, tensors, mode, name=str(out_path))
    return out, tensors, left + left_uses


def _verifies(
    data: bytes, out_path: Path, x: np.ndarray, references: list, mode: ExportMode, threads: int
) -> bool:
    """True when ``data`` matches ``references`` within the target tolerance (temp file beside out)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=".try.tflite", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        compare_outputs(
            _run_file(Path(tmp), x, threads), references, mode, what="candidate", reference_name="ref"
        )
        return True
    except ExportVerificationError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# public entry points


def export_tflite(
    module: Any,
    example_input: Any,
    mode: str | ExportMode,
    palettes: dict[str, Any] | None,
    out_path: str | os.PathLike,
    *,
    dense_tflite: bytes | None = None,
    threads: int = 1,
) -> ExportedFile:
    """Export ``module`` to ``out_path`` in ``mode`` and verify it in LiteRT before it is renamed.

    ``palettes`` (palette modes): name -> Palette for parameters of ``module``; ``palette-int8`` needs
    palettes made with ``int8_grid=True``. ``module`` may be the original model or its palettized
    copy: weights are matched by the module's own values and by the decoded palette values.
    ``dense_tflite``: litert-torch bytes of this same ``module`` (else the cached conversion, if any).
    With it the palette is first placed into the dense conversion; when that leaves a palette
    unplaced or fails verification (a converter folded something computed from the weights, e.g. a
    LayerNorm's beta into the next bias), the palettized model itself is converted and used.
    The reference is PyTorch with decoded weights (``palette.decode()``).
    """
    mode = parse_mode(mode)
    out_path = Path(out_path)
    if mode is not ExportMode.DENSE and not palettes:
        raise ConfigError(f"export mode {mode.value} needs palettes", next_step="Palettize the model first.")
    if mode is ExportMode.PALETTE_INT8:
        plain = sorted(n for n, p in palettes.items() if getattr(p, "scale", None) is None)
        if plain:
            raise ConfigError(
                f"mode palette-int8 needs palettes on the int8 grid; {len(plain)} have no scale "
                f"(first: {plain[0]!r})",
                next_step="Palettize with int8_grid=True.",
            )
    x = example_input.detach().cpu().numpy().astype(np.float32)
    what = f"TFLite {mode.value} file {out_path.name}"
    if mode is ExportMode.DENSE:
        data = dense_tflite if dense_tflite is not None else convert_pytorch(module, example_input)
        references = _torch_outputs(module, example_input)
        tensors: list[dict] = []
        left: list[tuple[str, str]] = []
        ref_name = "PyTorch"
    else:
        reference_module = decoded_module(module, palettes)
        references = _torch_outputs(reference_module, example_input)
        ref_name = "the palettized PyTorch model"
        attempt = None
        dense = dense_tflite if dense_tflite is not None else cached_conversion(module, example_input)
        if dense is not None:
            # Fast path: the dense conversion, weights found by their original values. Right when the
            # converter folded nothing that depends on the weights (a following batch norm is fine;
            # a preceding LayerNorm's beta folded into the bias is not): verification decides.
            params = {n: p.detach().cpu().numpy() for n, p in module.named_parameters()}
            attempt = _post_pass(
                dense, palettes, mode, {n: params[n] for n in palettes if n in params}, out_path
            )
            unplaced = [n for n, r in attempt[2] if r.startswith(NOT_FOUND)]
            # an input-side factor means a preceding norm was folded in, and with it (in general) its
            # beta into the bias, computed from the original weights: not the palettized model.
            input_folded = any(t.get("folded_factor") == "input" for t in attempt[1])
            if unplaced or input_folded or not _verifies(attempt[0], out_path, x, references, mode, threads):
                attempt = None
        if attempt is None:
            # The brief's route: convert the palettized model, so the file's weights (and anything
            # the converter folded from them) are exactly those of the decoded model.
            decoded_bytes = convert_pytorch(reference_module, example_input)
            attempt = _post_pass(decoded_bytes, palettes, mode, None, out_path)
        data, tensors, left = attempt
    verification: dict = {}

    def verify(tmp: Path) -> None:
        verification.update(
            compare_outputs(_run_file(tmp, x, threads), references, mode, what=what, reference_name=ref_name)
        )

    _finish(data, out_path, verify)
    return ExportedFile.of(out_path, ExportFormat.TFLITE, mode, tensors, sorted(left))


# -- tflite:<path> sources ---------------------------------------------------------------------

#: Weight readers of an existing file: operator -> (torch module type, file-layout permutation of the
#: torch weight, builder of the torch module holding the weight in torch layout).
_FILE_WEIGHT_OPS = {
    "FULLY_CONNECTED": ("Linear", (0, 1)),
    "CONV_2D": ("Conv2d", (0, 2, 3, 1)),
    "DEPTHWISE_CONV_2D": ("Conv2d", (1, 2, 3, 0)),
}


def _file_weight_candidates(model: Any, threshold: int) -> list[tuple[int, int, str, np.ndarray]]:
    """Constant fp32 tensors read only as the weight (input 1) of FC / CONV_2D / DEPTHWISE_CONV_2D."""
    uses = fb.tensor_uses(model)
    f32 = fb.tensor_type("FLOAT32")
    out = []
    for (si, ti), us in sorted(uses.items()):
        t = model.subgraphs[si].tensors[ti]
        if int(t.type) != f32:
            continue
        ops = {u.op for u in us}
        if len(ops) != 1 or any(u.input_pos != 1 for u in us) or next(iter(ops)) not in _FILE_WEIGHT_OPS:
            continue
        arr = fb.constant_array(model, t)
        if arr is None or arr.size < threshold:
            continue
        out.append((si, ti, next(iter(ops)), arr))
    return out


def _holder_module(candidates: list[tuple[int, int, str, np.ndarray]]) -> tuple[Any, dict[str, tuple]]:
    """A torch module holding each candidate weight in torch layout, so the palettizer can run on it."""
    import torch
    from torch import nn

    holder = nn.Module()
    where: dict[str, tuple] = {}
    for si, ti, op, arr in candidates:
        _, perm = _FILE_WEIGHT_OPS[op]
        inverse = tuple(int(i) for i in np.argsort(perm))
        torch_w = np.array(arr.transpose(inverse), dtype=np.float32, order="C")  # writable copy
        key = f"{op.lower()}_{si}_{ti}"
        if op == "FULLY_CONNECTED":
            mod = nn.Linear(torch_w.shape[1], torch_w.shape[0], bias=False)
        elif op == "CONV_2D":
            o, i, h, w = torch_w.shape
            mod = nn.Conv2d(i, o, (h, w), bias=False)
        else:
            o, _, h, w = torch_w.shape
            mod = nn.Conv2d(o, o, (h, w), groups=o, bias=False)
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(torch_w))
        holder.add_module(key, mod)
        where[f"{key}.weight"] = (si, ti, op, perm)
    return holder, where


def _random_input(model: Any, seed: int = 0) -> np.ndarray:
    sg = model.subgraphs[0]
    t = sg.tensors[sg.inputs[0]]
    shape = [max(1, int(d)) for d in t.shape]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def palettize_tflite_file(
    path: str | os.PathLike,
    config: Any,
    out_path: str | os.PathLike,
    *,
    mode: str | ExportMode | None = None,
    threads: int = 1,
    palettize_fn: Any = None,
) -> ExportedFile:
    """Palettize the fp32 weights of an existing ``.tflite`` file directly (no PyTorch model).

    Weights are the constant fp32 tensors read as the weight of FULLY_CONNECTED / CONV_2D /
    DEPTHWISE_CONV_2D with at least ``config.weight_threshold`` elements. They are clustered with
    ``pipeline.palettize.palettize`` (``palettize_fn`` replaces it, for tests), written with the same
    post-pass as :func:`export_tflite`, and verified against the dense input file on a fixed random
    input. ``mode`` defaults to ``palette-int8`` when ``config.int8_grid`` else ``palette``.
    Palette names in the result are ``<op>_<subgraph>_<tensor>.weight``; ``file_tensors`` holds the
    file's own tensor names.
    """
    src = Path(path)
    model = fb.read_tflite(src)
    if mode is None:
        mode = ExportMode.PALETTE_INT8 if getattr(config, "int8_grid", False) else ExportMode.PALETTE
    mode = parse_mode(mode)
    if mode is ExportMode.DENSE:
        raise ConfigError(
            "a tflite: source is already dense; choose mode palette or palette-int8",
            field="mode",
            value="dense",
        )
    if mode is ExportMode.PALETTE_INT8 and not getattr(config, "int8_grid", False):
        raise ConfigError(
            "mode palette-int8 needs int8_grid=True in the palettize config",
            field="int8_grid",
            next_step="Set int8_grid: true or use mode palette.",
        )
    candidates = _file_weight_candidates(model, int(getattr(config, "weight_threshold", 0) or 0))
    if not candidates:
        from pipeline.errors import NothingToDoError

        raise NothingToDoError(
            f"{src} has no fp32 FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D weight "
            f"with at least {getattr(config, 'weight_threshold', 0)} elements",
            next_step="Lower weight_threshold, or pass a float (not quantized) model.",
            path=str(src),
        )
    holder, where = _holder_module(candidates)
    if palettize_fn is None:
        from pipeline.palettize import palettize as palettize_fn
    result = palettize_fn(holder, config)
    palettes = dict(result.palettes)
    placements = []
    for name, pal in sorted(palettes.items()):
        si, ti, _, perm = where[name]
        label = {(0, 1): "OI", (0, 2, 3, 1): "OHWI", (1, 2, 3, 0): "IHWO"}[perm]
        placements.append(Placement(pal, si, ti, label, perm))
    tensors, left = apply_palettes(model, placements, mode)
    left += [(str(n), str(r)) for n, r in getattr(result, "skipped", [])]
    data = fb.tflite_to_bytes(model)
    out_path = Path(out_path)
    check_palette_invariants(data, tensors, mode, name=str(out_path))
    # Reference: the input file with the placed weights replaced by their decoded fp32 values, so
    # the check isolates the post-pass (clustering error is the palettizer's report, not a mismatch).
    reference_model = fb.read_tflite(src)
    for info in tensors:
        pl = next(p for p in placements if p.palette.name == info["name"])
        t = reference_model.subgraphs[pl.subgraph].tensors[pl.tensor]
        dec = np.asarray(pl.palette.decode(), dtype=np.float32).reshape(pl.palette.shape).transpose(pl.perm)
        reference_model.buffers[t.buffer].data = np.frombuffer(np.ascontiguousarray(dec).tobytes(), np.uint8)
    x = _random_input(model)
    with tempfile.TemporaryDirectory() as tmpdir:
        ref_path = Path(tmpdir) / "decoded_reference.tflite"
        fb.write_tflite(reference_model, ref_path)
        references = _run_file(ref_path, x, threads)
    fidelity = _max_abs_diff(references, _run_file(src, x, threads))

    def verify(tmp: Path) -> None:
        compare_outputs(
            _run_file(tmp, x, threads),
            references,
            mode,
            what=f"TFLite {mode.value} file {out_path.name}",
            reference_name=f"{src.name} with decoded palette weights",
        )

    _finish(data, out_path, verify)
    for info in tensors:
        info["source_max_abs_diff"] = fidelity  # palettized vs the original dense file, same input
    return ExportedFile.of(out_path, ExportFormat.TFLITE, mode, tensors, sorted(left))
