"""Export a PyTorch model to ONNX in the three modes: dense, palette, palette-int8.

Route: export the (palettized) model densely with ``torch.onnx.export`` (TorchScript exporter,
opset 17, dynamic batch), then rewrite the graph's weight initializers. Exporting ``codebook[idx]``
directly would give GatherND or int64 indices (8x bigger), so the palette goes in afterwards.

Finding each palette's initializer: by name first, else by value (the dense file holds exactly the
palette's decoded weight, or its transpose for ``MatMul`` B operands, or a per-output-channel
multiple of it where the exporter folded a BatchNorm into a Conv). Anything not found is left dense
and reported in ``left_dense`` with the reason; nothing is ever replaced on a guess.

``palette``: uint8 indices + fp32 codebook, ``Cast(int32) -> [Add group offsets] -> Gather ->
[Mul per-channel scale]`` producing the original tensor name.

``palette-int8``: palettes on the per-channel int8 grid are stored as standard per-channel int8
weights. Where every consumer is a ``MatMul``/``Gemm``/``Conv`` with the weight as B/W operand the
node becomes the dynamic-range integer form that stock kernels run fast
(``DynamicQuantizeLinear -> MatMulInteger | ConvInteger -> Cast -> Mul(scales) [-> Add bias]``);
otherwise the weight is decoded by ``DequantizeLinear`` (weight-only int8: small file, fp32 speed).
Each tensor's ``form`` in the report says which.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.errors import ConfigError, ExportError
from converters.modes import ExportedFile, ExportFormat, ExportMode, parse_mode

OPSET = 17


# ---------------------------------------------------------------- palette access (duck-typed)
def palette_k(p) -> int:
    return int(np.asarray(p.codebook).shape[-1])


def palette_groups_of_channel(p) -> np.ndarray:
    """Codebook row of each output channel (prefers the palette's own method)."""
    out = int(tuple(p.shape)[0])
    method = getattr(p, "group_of_channel", None)
    if callable(method):
        return np.asarray(method(), dtype=np.int64).reshape(out)
    codebook = np.asarray(p.codebook).reshape(-1, palette_k(p))
    if codebook.shape[0] == 1 or not getattr(p, "group_size", None):
        return np.zeros(out, dtype=np.int64)
    return np.arange(out, dtype=np.int64) // int(p.group_size)


def palette_codes(p) -> np.ndarray:
    """Codebook values per element (int8-grid q for int8_grid palettes), float32 of ``p.shape``."""
    codebook = np.asarray(p.codebook, dtype=np.float32).reshape(-1, palette_k(p))
    idx = np.asarray(p.indices)
    goc = palette_groups_of_channel(p)
    rows = goc.reshape((-1,) + (1,) * (idx.ndim - 1))
    return codebook[rows, idx.astype(np.int64)]


def palette_scale(p) -> np.ndarray | None:
    scale = getattr(p, "scale", None)
    return None if scale is None else np.asarray(scale, dtype=np.float32).reshape(-1)


def decode_palette(p) -> np.ndarray:
    """The float32 weight a palette stands for (same arithmetic as the graph: code * scale)."""
    codes = palette_codes(p)
    scale = palette_scale(p)
    if scale is not None:
        codes = codes * scale.reshape((-1,) + (1,) * (codes.ndim - 1))
    return codes.astype(np.float32)


def distinct_codes_per_group(p) -> int:
    idx = np.asarray(p.indices)
    goc = palette_groups_of_channel(p)
    return max(int(np.unique(idx[goc == g]).size) for g in np.unique(goc))


# ---------------------------------------------------------------- dense export
def _output_names(module, example_input) -> list[str]:
    import torch

    with torch.no_grad():
        out = module(example_input)
    if isinstance(out, (tuple, list)):
        return [f"output_{i}" for i in range(len(out))]
    return ["output"]


def export_dense_onnx(module, example_input, path: Path) -> None:
    """``torch.onnx.export`` (TorchScript route, opset 17, dynamic batch; static batch if that fails)."""
    import torch

    names = _output_names(module, example_input)
    errors = []
    for dynamic in (True, False):
        axes = {n: {0: "batch"} for n in ["input", *names]} if dynamic else None
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (example_input,), str(path), dynamo=False, opset_version=OPSET,
                                  input_names=["input"], output_names=names, dynamic_axes=axes,
                                  do_constant_folding=True)
            return
        except Exception as err:  # the exporter raises many types; keep them for the message
            errors.append(f"{type(err).__name__}: {str(err)[:300]}")
    raise ExportError(f"torch.onnx.export failed for {type(module).__name__}: {' | '.join(errors)}",
                      next_step="Check that the model runs on the example input and uses exportable ops.")


# ---------------------------------------------------------------- finding palettes in a graph
@dataclass
class Placement:
    palette: str
    initializer: str
    layout: str  # "same" (file tensor == weight) or "transposed" (file tensor == weight.T)
    channel_scale: np.ndarray | None  # per output channel multiplier folded in by the exporter

    @property
    def out_axis(self) -> int:
        return 1 if self.layout == "transposed" else 0


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= 1e-6 * max(
        1.0, float(np.max(np.abs(b), initial=0.0)))


def _channel_scale(file_w: np.ndarray, dec: np.ndarray, out_axis: int) -> np.ndarray | None:
    """s with file_w == s[c] * dec along ``out_axis`` (a folded BatchNorm), else None."""
    if file_w.shape != dec.shape:
        return None
    a = np.moveaxis(file_w, out_axis, 0).reshape(file_w.shape[out_axis], -1).astype(np.float64)
    d = np.moveaxis(dec, out_axis, 0).reshape(dec.shape[out_axis], -1).astype(np.float64)
    den = np.sum(d * d, axis=1)
    if np.any((den == 0) & (np.abs(a).max(axis=1) > 0)):
        return None
    s = np.where(den > 0, np.sum(a * d, axis=1) / np.where(den > 0, den, 1.0), 1.0).astype(np.float32)
    recon = s[:, None].astype(np.float32) * d.astype(np.float32)
    if float(np.max(np.abs(recon - a), initial=0.0)) > 1e-5 * max(float(np.abs(a).max(initial=0.0)), 1e-30):
        return None
    return s


def find_placements(model, palettes: dict) -> tuple[list[Placement], list[tuple[str, str]]]:
    """Map each palette to one float initializer of ``model`` (see module doc); report the rest."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    arrays: dict[str, np.ndarray] = {}

    def arr(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(inits[name])
        return arrays[name]

    by_shape: dict[tuple, list[str]] = {}
    by_hash: dict[bytes, list[str]] = {}
    for name, t in inits.items():
        by_shape.setdefault(tuple(t.dims), []).append(name)
    for name in inits:
        if len(inits[name].dims) >= 2:
            by_hash.setdefault(hashlib.sha1(np.ascontiguousarray(arr(name)).tobytes()).digest(), []).append(name)

    used: set[str] = set()
    placements: list[Placement] = []
    left: list[tuple[str, str]] = []
    for pname, p in palettes.items():
        dec = decode_palette(p)
        found = None
        variants = [("same", dec)] + ([("transposed", np.ascontiguousarray(dec.T))] if dec.ndim == 2 else [])
        # 1) the name, 2) exact value (either layout), 3) per-channel multiple (folded BatchNorm)
        if pname in inits and pname not in used:
            for layout, v in variants:
                if _close(arr(pname), v):
                    found = Placement(pname, pname, layout, None)
                    break
        if found is None:
            for layout, v in variants:
                for cand in by_hash.get(hashlib.sha1(v.tobytes()).digest(), []):
                    if cand not in used and np.array_equal(arr(cand), v):
                        found = Placement(pname, cand, layout, None)
                        break
                if found:
                    break
        if found is None:
            for layout, v in variants:
                out_axis = 1 if layout == "transposed" else 0
                names = ([pname] if pname in inits else []) + by_shape.get(v.shape, [])
                for cand in names:
                    if cand in used:
                        continue
                    if _close(arr(cand), v):
                        found = Placement(pname, cand, layout, None)
                    else:
                        s = _channel_scale(arr(cand), v, out_axis)
                        if s is not None:
                            found = Placement(pname, cand, layout, s)
                    if found:
                        break
                if found:
                    break
        if found is None:
            twin = next((pl for pl in placements for layout, v in variants
                         if arr(pl.initializer).shape == v.shape and (
                             _close(arr(pl.initializer), v) or _channel_scale(
                                 arr(pl.initializer), v, 1 if layout == "transposed" else 0) is not None)), None)
            if twin is not None:
                left.append((pname, f"the exporter stored it in the same initializer as {twin.palette} "
                                    f"({twin.initializer}: equal values after folding), palettized once there"))
                continue
            if pname in inits:
                reason = (f"initializer {pname} holds other values than the palette decodes to "
                          "(not exported from the palettized weights?)")
            elif not any(by_shape.get(v.shape) for _, v in variants):
                reason = (f"no float initializer of shape {list(dec.shape)} in the graph "
                          "(the exporter folded, split or fused the weight)")
            else:
                reason = "no initializer holds the palette's values (the exporter transformed the weight)"
            left.append((pname, reason))
            continue
        used.add(found.initializer)
        placements.append(found)
    return placements, left


# ---------------------------------------------------------------- graph rewriting
class _Graph:
    """A small editing helper over a GraphProto: unique names, new initializers, node splicing."""

    def __init__(self, model) -> None:
        self.model = model
        self.graph = model.graph
        self.names = {t.name for t in self.graph.initializer} | {i.name for i in self.graph.input}
        for node in self.graph.node:
            self.names.update(node.output)
        self.prefix_nodes: list = []
        self.replacements: dict[int, list] = {}
        self.after: dict[int, list] = {}
        self.new_inits: list = []
        self.drop_inits: set[str] = set()

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def add_init(self, base: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique(base)
        self.new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def add_after_producer(self, tensor: str, node) -> None:
        """Place ``node`` right after the node producing ``tensor`` (first, for inputs/initializers)."""
        for i, n in enumerate(self.graph.node):
            if tensor in n.output:
                self.after.setdefault(i, []).append(node)
                return
        self.prefix_nodes.append(node)

    def consumers(self, tensor: str) -> list[tuple[int, object]]:
        return [(i, n) for i, n in enumerate(self.graph.node) if tensor in n.input]

    def used_in_subgraphs(self, tensor: str) -> bool:
        for node in self.graph.node:
            for attr in node.attribute:
                graphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
                for g in graphs:
                    if any(tensor in n.input for n in g.node):
                        return True
        return False

    def commit(self) -> None:
        nodes = list(self.prefix_nodes)
        for i, node in enumerate(self.graph.node):
            nodes.extend(self.replacements.get(i, [node]))
            nodes.extend(self.after.get(i, []))
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        keep = [t for t in self.graph.initializer if t.name not in self.drop_inits]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep + self.new_inits)
        inputs = [i for i in self.graph.input if i.name not in self.drop_inits]
        del self.graph.input[:]
        self.graph.input.extend(inputs)


def _bshape(n: int, axis: int, ndim: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis] = n
    return tuple(shape)


def _gather_decode(g: _Graph, pl: Placement, p) -> dict:
    """uint8 indices + codebook, decoded by Cast -> [Add] -> Gather -> [Mul] into the tensor's name."""
    from onnx import TensorProto, helper

    w = pl.initializer
    idx = np.asarray(p.indices).astype(np.uint8)
    if pl.layout == "transposed":
        idx = idx.T
    k = palette_k(p)
    codebook = np.asarray(p.codebook, dtype=np.float32).reshape(-1, k)
    goc = palette_groups_of_channel(p)
    scale = palette_scale(p)
    if pl.channel_scale is not None:
        scale = pl.channel_scale if scale is None else (scale * pl.channel_scale).astype(np.float32)
    new = [g.add_init(f"{w}.palette_indices", idx), g.add_init(f"{w}.palette_codebook", codebook.reshape(-1))]
    idx32 = g.unique(f"{w}.palette_indices_i32")
    nodes = [helper.make_node("Cast", [new[0]], [idx32], to=TensorProto.INT32, name=g.unique(f"{w}.palette_cast"))]
    if codebook.shape[0] > 1:
        offsets = (goc * k).astype(np.int32).reshape(_bshape(idx.shape[pl.out_axis], pl.out_axis, idx.ndim))
        new.append(g.add_init(f"{w}.palette_group_offsets", offsets))
        flat = g.unique(f"{w}.palette_flat_indices")
        nodes.append(helper.make_node("Add", [idx32, new[-1]], [flat], name=g.unique(f"{w}.palette_offset")))
        idx32 = flat
    values = w if scale is None else g.unique(f"{w}.palette_values")
    nodes.append(helper.make_node("Gather", [new[1], idx32], [values], axis=0, name=g.unique(f"{w}.palette_gather")))
    if scale is not None:
        new.append(g.add_init(f"{w}.palette_scale",
                              scale.astype(np.float32).reshape(_bshape(scale.size, pl.out_axis, idx.ndim))))
        nodes.append(helper.make_node("Mul", [values, new[-1]], [w], name=g.unique(f"{w}.palette_scale_mul")))
    g.prefix_nodes.extend(nodes)
    g.drop_inits.add(w)
    return {"form": "gather", "file_tensors": new}


def _int8_codes(p) -> np.ndarray:
    codes = palette_codes(p)
    q = np.rint(codes)
    if not np.array_equal(q, codes) or q.min(initial=0) < -127 or q.max(initial=0) > 127:
        raise ConfigError(
            f"palette {p.name}: codebook values are not integers in [-127, 127]",
            next_step="palette-int8 needs palettes made with PalettizeConfig(int8_grid=True).",
            tensor=p.name)
    return q.astype(np.int8)


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _int8_consumer_ok(node, w: str, pl: Placement, ndim: int) -> bool:
    if list(node.input).count(w) != 1 or (len(node.input) < 2 or node.input[1] != w):
        return False
    if node.op_type == "MatMul":
        return ndim == 2 and pl.out_axis == 1
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0) or (len(node.input) > 2 and node.input[2] and _attr(node, "beta", 1.0) != 1.0):
            return False
        return pl.out_axis == (0 if _attr(node, "transB", 0) else 1)
    if node.op_type == "Conv":
        return pl.out_axis == 0 and _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    return False


def _int8_weights(g: _Graph, pl: Placement, p, dq_cache: dict) -> dict:
    """Per-channel int8 weights: integer matmul/conv nodes where possible, else DequantizeLinear."""
    from onnx import TensorProto, helper

    w = pl.initializer
    q = _int8_codes(p)
    if pl.layout == "transposed":
        q = np.ascontiguousarray(q.T)
    scale = palette_scale(p)
    if scale is None:
        raise ConfigError(f"palette {p.name} has no per-channel scale",
                          next_step="palette-int8 needs palettes made with PalettizeConfig(int8_grid=True).")
    if pl.channel_scale is not None:
        scale = (scale * pl.channel_scale).astype(np.float32)
    consumers = g.consumers(w)
    integer = bool(consumers) and not g.used_in_subgraphs(w) and w not in {o.name for o in g.graph.output} and all(
        _int8_consumer_ok(n, w, pl, q.ndim) for _, n in consumers)
    opset = max((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), default=OPSET)
    if not integer:
        qname = g.add_init(f"{w}.int8", q)
        if opset >= 13:
            sname = g.add_init(f"{w}.int8_scale", scale.astype(np.float32))
            g.prefix_nodes.append(helper.make_node("DequantizeLinear", [qname, sname], [w], axis=pl.out_axis,
                                                   name=g.unique(f"{w}.dequantize")))
            form = "DequantizeLinear"
        else:  # per-axis DequantizeLinear needs opset 13: the same arithmetic with Cast and Mul
            sname = g.add_init(f"{w}.int8_scale", scale.reshape(_bshape(scale.size, pl.out_axis, q.ndim)))
            casted = g.unique(f"{w}.int8_float")
            g.prefix_nodes += [helper.make_node("Cast", [qname], [casted], to=TensorProto.FLOAT),
                               helper.make_node("Mul", [casted, sname], [w])]
            form = "Cast+Mul"
        g.drop_inits.add(w)
        return {"form": form, "file_tensors": [qname, sname], "int8_channel_axes": {qname: pl.out_axis}}

    forms = set()
    files: list[str] = []
    axes: dict[str, int] = {}
    for index, node in consumers:
        op = node.op_type
        b = q.T if (op == "Gemm" and _attr(node, "transB", 0)) else q
        qname = g.add_init(f"{w}.int8", np.ascontiguousarray(b))
        if op == "Conv":
            sname = g.add_init(f"{w}.int8_scale", scale.reshape(_bshape(scale.size, 1, q.ndim)))
        else:
            alpha = float(_attr(node, "alpha", 1.0)) if op == "Gemm" else 1.0
            sname = g.add_init(f"{w}.int8_scale", (scale * np.float32(alpha)).astype(np.float32))
        files += [qname, sname]
        axes[qname] = 0 if op == "Conv" else 1
        x = node.input[0]
        if x not in dq_cache:
            xq, xs, xz = (g.unique(f"{x}.quantized"), g.unique(f"{x}.scale"), g.unique(f"{x}.zero_point"))
            dq_cache[x] = (xq, xs, xz)
            g.add_after_producer(x, helper.make_node("DynamicQuantizeLinear", [x], [xq, xs, xz],
                                                     name=g.unique(f"{x}.dynamic_quantize")))
        xq, xs, xz = dq_cache[x]
        y = node.output[0]
        acc, acc_f, s_all = g.unique(f"{y}.int32"), g.unique(f"{y}.int32_float"), g.unique(f"{y}.scale")
        nodes = []
        if op == "Conv":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes.append(helper.make_node("ConvInteger", [xq, qname, xz], [acc], name=g.unique(f"{node.name}.int8"),
                                          **attrs))
        else:
            nodes.append(helper.make_node("MatMulInteger", [xq, qname, xz], [acc], name=g.unique(f"{node.name}.int8")))
        nodes.append(helper.make_node("Cast", [acc], [acc_f], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Mul", [xs, sname], [s_all]))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        scaled = y if bias is None else g.unique(f"{y}.no_bias")
        nodes.append(helper.make_node("Mul", [acc_f, s_all], [scaled]))
        if bias is not None:
            if op == "Conv":
                shape = g.add_init(f"{y}.bias_shape", np.array(_bshape(-1, 1, q.ndim), dtype=np.int64))
                files.append(shape)
                b_r = g.unique(f"{y}.bias_reshaped")
                nodes.append(helper.make_node("Reshape", [bias, shape], [b_r]))
                bias = b_r
            nodes.append(helper.make_node("Add", [scaled, bias], [y]))
        g.replacements.setdefault(index, []).extend(nodes)
        forms.add("ConvInteger" if op == "Conv" else "MatMulInteger")
    g.drop_inits.add(w)
    return {"form": "+".join(sorted(forms)), "file_tensors": files, "int8_channel_axes": axes}


def _bypass_initializer_identities(model) -> None:
    """Let consumers of ``Identity(initializer)`` read the initializer itself.

    The TorchScript exporter stores identical weights once and feeds the copies through Identity
    nodes; left in place, an Identity would hide a weight's real consumers (MatMul/Conv) from the
    int8 rewrite. Graph outputs and subgraph references keep their Identity.
    """
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
    if not alias:
        return
    in_subgraphs = set()
    for node in graph.node:
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                for n in g.node:
                    in_subgraphs.update(n.input)
    alias = {k: v for k, v in alias.items() if k not in in_subgraphs}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] in alias:
            continue
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def rewrite_palettes(model, palettes: dict, mode: ExportMode | str) -> tuple[object, list[dict], list[tuple[str, str]]]:
    """Replace the initializers holding palettized weights (``model`` holds the decoded weights).

    Returns the edited model, one stats dict per palettized tensor, and (name, reason) for palettes
    left dense.
    """
    from onnx import numpy_helper

    mode = parse_mode(mode)
    _bypass_initializer_identities(model)
    placements, left = find_placements(model, palettes)
    g = _Graph(model)
    sizes = {t.name: len(numpy_helper.to_array(t).tobytes()) for t in model.graph.initializer
             if t.name in {pl.initializer for pl in placements}}
    stats: list[dict] = []
    dq_cache: dict = {}
    for pl in placements:
        p = palettes[pl.palette]
        if mode is ExportMode.PALETTE_INT8:
            info = _int8_weights(g, pl, p, dq_cache)
        else:
            info = _gather_decode(g, pl, p)
        new_by_name = {t.name: t for t in g.new_inits}
        file_bytes = sum(len(numpy_helper.to_array(new_by_name[n]).tobytes()) for n in info["file_tensors"])
        stats.append({
            "name": pl.palette,
            "initializer": pl.initializer,
            "shape": [int(s) for s in p.shape],
            "clusters": palette_k(p),
            "groups": int(np.asarray(p.codebook).reshape(-1, palette_k(p)).shape[0]),
            "distinct_codes": distinct_codes_per_group(p),
            "layout": pl.layout,
            "folded_channel_scale": pl.channel_scale is not None,
            "form": info["form"],
            "file_tensors": info["file_tensors"],
            "int8_channel_axes": info.get("int8_channel_axes", {}),
            "dense_bytes": int(sizes[pl.initializer]),
            "file_bytes": int(file_bytes),
        })
    g.commit()
    return model, stats, left


def _save(model, out_path: Path) -> None:
    import onnx

    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_mode_palettes(mode: ExportMode, palettes: dict | None) -> dict:
    if mode is ExportMode.DENSE:
        return {}
    if not palettes:
        raise ConfigError(f"mode {mode.value} needs palettes, got none",
                          next_step="Palettize the model first (pipeline.palettize) or use mode dense.")
    if mode is ExportMode.PALETTE_INT8:
        missing = [n for n, p in palettes.items() if getattr(p, "scale", None) is None]
        if missing:
            raise ConfigError(
                f"mode palette-int8 needs int8-grid palettes; {len(missing)} have no per-channel scale "
                f"(first: {missing[0]})",
                next_step="Palettize with PalettizeConfig(int8_grid=True) for palette-int8.")
    return dict(palettes)


def export_onnx(module, example_input, mode: ExportMode | str, palettes: dict | None, out_path: Path) -> ExportedFile:
    """Write ``module`` as ONNX in ``mode`` to ``out_path`` (palettes ignored for dense).

    The file computes what the palettized PyTorch model computes (``verify.palettized_reference``);
    the caller verifies it (``converters.bundle`` does before writing a bundle).
    """
    import onnx

    from converters.verify import palettized_reference

    mode = parse_mode(mode)
    palettes = check_mode_palettes(mode, palettes)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    reference, missing = palettized_reference(module, palettes)
    tmp = out_path.with_name(f".{out_path.stem}.dense-{os.getpid()}.onnx")
    try:
        export_dense_onnx(reference, example_input, tmp)
        model = onnx.load(str(tmp))
    finally:
        if tmp.exists():
            tmp.unlink()
    usable = {n: p for n, p in palettes.items() if n not in dict(missing)}
    stats, left = [], list(missing)
    if usable:
        model, stats, more_left = rewrite_palettes(model, usable, mode)
        left += more_left
    meta = model.metadata_props.add()
    meta.key, meta.value = "vitpalette.export_mode", mode.value
    try:
        onnx.checker.check_model(model)
    except Exception as err:
        raise ExportError(f"the rewritten ONNX graph for {out_path.name} fails onnx.checker: {err}",
                          next_step="This is a bug in the palette rewrite; report it with --debug output.") from err
    _save(model, out_path)
    return ExportedFile.of(out_path, ExportFormat.ONNX, mode, stats, left)
