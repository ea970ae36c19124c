"""File sources: ``onnx:<path>`` palettizes the float weights of an existing ONNX file directly.

No PyTorch model is involved (and no torch import): the weights are read from the graph's
initializers, clustered with ``pipeline.palettize.palettize_array`` under the same selection rules
as a PyTorch model (module types, weight threshold, include/exclude regexes, overrides), written
back with the same graph rewrite as :func:`converters.onnx.export_onnx`, and verified against the
reference = the dense input file with its palettized weights replaced by their decoded values
(which isolates the encoding; the clustering error itself is reported separately as fidelity to the
original file).

Which initializers count as weights, and as which module type:
``MatMul`` B operand (2-D; the weight of a ``Linear``, stored [in, out]) and ``Gemm`` B operand ->
``Linear``; ``Conv`` weight of rank 4 -> ``Conv2d``, rank 3 -> ``Conv1d``. Selection regexes search
the initializer names as they are in the file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.errors import ConfigError, ModelFileError
from converters.modes import ExportedFile, ExportFormat, ExportMode, parse_mode

FILE_PREFIXES = ("onnx:", "tflite:")


def is_file_source(source: str) -> bool:
    return isinstance(source, str) and source.startswith(FILE_PREFIXES)


@dataclass
class FileSource:
    kind: str  # "onnx" | "tflite"
    path: Path
    source: str
    input_shape: tuple[int, ...]
    name: str = ""
    extras: dict = field(default_factory=dict)

    def example_input(self, batch: int = 1, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, *self.input_shape[1:])).astype(np.float32)


def load_onnx_model(path: Path | str):
    """onnx.load with a clear error for missing, truncated or non-ONNX files."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX file {path} does not exist", next_step="Check the path after 'onnx:'.",
                             path=str(path))
    try:
        model = onnx.load(str(path))
    except Exception as err:  # DecodeError, OSError from external data, ...
        raise ModelFileError(
            f"{path} is not a readable ONNX model ({type(err).__name__}: {str(err)[:200]})",
            next_step="The file is truncated or not ONNX; export it again or pass the right file.",
            path=str(path)) from err
    if not model.graph.node or not model.graph.input:
        raise ModelFileError(f"{path} parses but holds no ONNX graph (no nodes or no inputs)",
                             next_step="The file is truncated or not an ONNX model; pass a complete model file.",
                             path=str(path))
    return model


def _input_shape(model, path: Path, override: tuple[int, ...] | None) -> tuple[int, ...]:
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelFileError(f"{path} has {len(inputs)} graph inputs; file sources take models with one input",
                             next_step="Export a single-input model.", path=str(path))
    dims = inputs[0].type.tensor_type.shape.dim
    shape = []
    for i, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(int(d.dim_value))
        elif i == 0:
            shape.append(1)
        elif override is not None:
            shape.append(int(override[i]))
        else:
            raise ModelFileError(f"{path}: input dimension {i} ({d.dim_param or '?'}) is not fixed",
                                 next_step="Pass --input-shape, e.g. 1,3,224,224.", path=str(path))
    if override is not None:
        shape = list(override)
    return tuple(shape)


def open_file_source(source: str, input_shape: tuple[int, ...] | None = None) -> FileSource:
    """Parse ``onnx:<path>`` / ``tflite:<path>`` and check the file is a loadable model."""
    kind, _, raw = source.partition(":")
    path = Path(raw).expanduser()
    if kind == "onnx":
        model = load_onnx_model(path)
        return FileSource("onnx", path, source, _input_shape(model, path, input_shape), name=path.stem)
    if kind == "tflite":
        from converters.runtimes import tflite_runner

        run = tflite_runner(path)  # raises ModelFileError for truncated files
        from ai_edge_litert.interpreter import Interpreter

        detail = Interpreter(model_path=str(path)).get_input_details()[0]
        shape = tuple(int(max(1, d)) for d in detail["shape"]) if input_shape is None else tuple(input_shape)
        del run
        return FileSource("tflite", path, source, shape, name=path.stem)
    raise ConfigError(f"unknown file source {source!r}; use onnx:<path> or tflite:<path>", field="model")


# ---------------------------------------------------------------- ONNX weights -> palettes
def _attr(node, name, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def onnx_weight_candidates(model) -> dict[str, tuple[str, np.ndarray, str]]:
    """initializer name -> (module type, weight in torch layout [out, ...], file layout)."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    uses: dict[str, list] = {}
    for node in model.graph.node:
        for pos, name in enumerate(node.input):
            if name in inits:
                uses.setdefault(name, []).append((node, pos))
    out = {}
    for name, us in uses.items():
        kinds = set()
        for node, pos in us:
            rank = len(inits[name].dims)
            if pos != 1:
                kinds.add(None)
            elif node.op_type == "MatMul" and rank == 2:
                kinds.add(("Linear", "transposed"))
            elif node.op_type == "Gemm" and rank == 2:
                kinds.add(("Linear", "same" if _attr(node, "transB", 0) else "transposed"))
            elif node.op_type == "Conv" and rank in (3, 4):
                kinds.add(("Conv2d" if rank == 4 else "Conv1d", "same"))
            else:
                kinds.add(None)
        if len(kinds) != 1 or None in kinds:
            continue
        mtype, layout = kinds.pop()
        w = numpy_helper.to_array(inits[name])
        out[name] = (mtype, np.ascontiguousarray(w.T) if layout == "transposed" else w, layout)
    return out


def palettize_onnx_weights(model, config) -> tuple[dict, list[tuple[str, str]]]:
    """Cluster the selected weights of an ONNX model: (palettes by initializer name, skipped)."""
    from pipeline.palettize import palettize_array

    candidates = onnx_weight_candidates(model)
    names = list(candidates)
    if config.include is not None:
        for pattern in config.include:
            if not any(re.search(pattern, n) for n in names):
                raise ConfigError(f"include pattern {pattern!r} matches no weight initializer; they look like: "
                                  f"{', '.join(names[:6])}", field="include",
                                  next_step="Fix the pattern (a regex searched in the file's initializer names).")
    palettes, skipped = {}, []
    for name, (mtype, w, _) in candidates.items():
        if mtype not in config.module_types:
            skipped.append((name, f"{mtype} weights are not in module_types"))
        elif w.size < config.weight_threshold:
            skipped.append((name, f"{w.size} elements < weight_threshold {config.weight_threshold}"))
        elif config.include is not None and not any(re.search(p, name) for p in config.include):
            skipped.append((name, "not matched by include"))
        elif config.exclude is not None and any(re.search(p, name) for p in config.exclude):
            skipped.append((name, "matched by exclude"))
        else:
            resolved = config.resolve(name) if hasattr(config, "resolve") else config
            if resolved is None:
                skipped.append((name, "an override leaves it dense"))
                continue
            palettes[name] = palettize_array(name, w, resolved)
    return palettes, skipped


def decoded_model(model, palettes: dict):
    """A copy of ``model`` whose palettized initializers hold the decoded weights (the reference)."""
    import copy

    from onnx import numpy_helper

    from converters.onnx import decode_palette

    ref = copy.deepcopy(model)
    by_name = {t.name: t for t in ref.graph.initializer}
    for name, p in palettes.items():
        t = by_name[name]
        dec = decode_palette(p)
        if tuple(t.dims) != dec.shape:
            dec = np.ascontiguousarray(dec.T)
        t.CopyFrom(numpy_helper.from_array(dec.astype(np.float32), name))
    return ref


def palettize_onnx_file(path: Path | str, config, out_path: Path | str, mode: ExportMode | str,
                        reference_out: Path | str | None = None) -> ExportedFile:
    """Palettize an existing ONNX file (see module doc). ``reference_out``: also write the
    decoded-weights dense reference there (what the bundle verifies against)."""
    import copy

    import onnx

    from converters.onnx import check_mode_palettes, rewrite_palettes

    mode = parse_mode(mode)
    out_path = Path(out_path)
    if mode is ExportMode.DENSE:
        shutil.copyfile(path, out_path)
        return ExportedFile.of(out_path, ExportFormat.ONNX, mode)
    if (mode is ExportMode.PALETTE_INT8) != bool(config.int8_grid):
        raise ConfigError(f"mode {mode.value} needs int8_grid={mode is ExportMode.PALETTE_INT8} in the palettize config",
                          field="int8_grid")
    model = load_onnx_model(path)
    palettes, skipped = palettize_onnx_weights(model, config)
    if not palettes:
        from pipeline.errors import NothingToDoError

        raise NothingToDoError(f"{path} has no float MatMul/Gemm/Conv weight that the config selects "
                               f"(weight_threshold {config.weight_threshold})",
                               next_step="Lower weight_threshold or check include/exclude.", path=str(path))
    check_mode_palettes(mode, palettes)
    reference = decoded_model(model, palettes)
    if reference_out is not None:
        onnx.save(reference, str(reference_out))
    rewritten, tensors, left = rewrite_palettes(copy.deepcopy(reference), palettes, mode)
    onnx.checker.check_model(rewritten)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        onnx.save(rewritten, str(tmp))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportedFile.of(out_path, ExportFormat.ONNX, mode, tensors, sorted(left + skipped))


def onnx_file_bundle(src: FileSource, mode: ExportMode | str, config, out_dir: Path | str, name: str,
                     dense_bytes: int | None = None):
    """Bundle for an ``onnx:`` source, verified against the decoded-weights dense file."""
    from converters.bundle import write_bundle
    from converters.runtimes import onnx_runner

    mode = parse_mode(mode)
    workdir = Path(tempfile.mkdtemp(prefix="onnx-source-"))
    try:
        ref_path = workdir / "reference.onnx"
        if mode is ExportMode.DENSE:
            shutil.copyfile(src.path, ref_path)

        def export(path: Path) -> ExportedFile:
            return palettize_onnx_file(src.path, config, path, mode, reference_out=ref_path)

        holder: dict = {}

        def reference(x: np.ndarray) -> list[np.ndarray]:
            if "run" not in holder:
                holder["run"] = onnx_runner(ref_path)
            return holder["run"](x)

        return write_bundle(
            export, reference=reference, golden_input=src.example_input(batch=1, seed=0), out_dir=out_dir,
            name=name, format=ExportFormat.ONNX, mode=mode, source_model=src.source, model_name=src.name,
            palettize_config=None if mode is ExportMode.DENSE else config.to_dict(), dense_bytes=dense_bytes,
            reference_label="the dense input file" if mode is ExportMode.DENSE
            else "the input file with its palettized weights replaced by the decoded values",
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
