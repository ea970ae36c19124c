"""Read, modify and write ``.tflite`` flatbuffers with the schema's generated object API.

Why a post-pass: every TFLite converter folds ``codebook[indices]`` of constants back into a dense
float weight, so the palette (uint8 indices + a small codebook, decoded on every run by CAST and
GATHER) and the per-channel int8 weights are put into the flatbuffer after conversion. This module
knows the file format only (tensors, buffers, operators); which tensor gets which palette is
decided in :mod:`converters.tflite`.

The schema classes come from ``ai_edge_litert.schema_py_generated`` (shipped with the interpreter),
so no TensorFlow is needed. Buffers are written 16-byte aligned, as the schema asks
(``data:[ubyte] (force_align: 16)``), so float and int8 weights can be read in place.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ModelFileError
from pipeline.errors import ExportError, OutputError

TFLITE_IDENTIFIER = b"TFL3"

# TensorType values (schema.fbs) -> numpy dtype, for the types a weight post-pass reads or writes.
_NUMPY_OF_TYPE = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    7: np.int16,
    9: np.int8,
    10: np.float64,
    12: np.uint64,
    15: np.uint32,
    16: np.uint16,
}


def _schema():
    """The generated schema module (imported lazily: ``import converters`` stays light)."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def tensor_type(name: str) -> int:
    """TensorType value for a name such as ``"FLOAT32"`` or ``"INT8"``."""
    return getattr(_schema().TensorType, name)


def tensor_type_name(value: int) -> str:
    for key, val in vars(_schema().TensorType).items():
        if not key.startswith("_") and val == value:
            return key
    return f"TYPE_{value}"


def builtin_code(name: str) -> int:
    return getattr(_schema().BuiltinOperator, name)


def builtin_name(code: int) -> str:
    for key, val in vars(_schema().BuiltinOperator).items():
        if not key.startswith("_") and val == code:
            return key
    return f"BUILTIN_{code}"


# ---------------------------------------------------------------------------------------------
# reading and writing


def parse_tflite_bytes(data: bytes, *, name: str = "<bytes>") -> Any:
    """Parse a ``.tflite`` file's bytes into a mutable ``ModelT``.

    Raises :class:`ModelFileError` (a ModelLoadError) naming ``name`` when the bytes are not a TFLite
    flatbuffer or are cut short (the 'TFL3' identifier is checked first, then every table is unpacked,
    which reads every offset and so catches truncation).
    """
    s = _schema()
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(
            f"{name} is not a TFLite model (no 'TFL3' file identifier in its first 8 bytes; "
            f"{len(data)} bytes)",
            next_step="Pass a .tflite file written by a TFLite converter (litert-torch, TFLiteConverter).",
            path=str(name),
        )
    buf = bytearray(data)
    try:
        model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
        # Buffers stored past the flatbuffer (offset/size, used for files over 2 GiB) move inline.
        for b in model.buffers or []:
            if b.offset and b.offset > 1:
                if b.offset + b.size > len(buf):
                    raise IndexError("buffer past the end of the file")
                b.data = np.frombuffer(bytes(buf[b.offset : b.offset + b.size]), dtype=np.uint8)
                b.offset, b.size = 0, 0
    except ModelFileError:
        raise
    except Exception as exc:  # flatbuffers raises struct.error / IndexError / ValueError on bad data
        raise ModelFileError(
            f"{name} could not be parsed as a TFLite flatbuffer ({type(exc).__name__}: {exc}); "
            "the file is truncated or corrupt",
            next_step="Re-export or re-download the .tflite file.",
            path=str(name),
        ) from exc
    if not model.subgraphs:
        raise ModelFileError(
            f"{name} holds no subgraph", next_step="Pass a complete .tflite model.", path=str(name)
        )
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            if not 0 <= t.buffer < len(model.buffers or []):
                raise ModelFileError(
                    f"{name}: tensor {t.name!r} points at buffer {t.buffer}, past the "
                    f"{len(model.buffers or [])} buffers in the file; the file is corrupt",
                    next_step="Re-export the .tflite file.",
                    path=str(name),
                )
    # Operator input/output lists come back as read-only numpy views: make them plain lists.
    for sg in model.subgraphs:
        sg.inputs = [int(i) for i in (sg.inputs if sg.inputs is not None else [])]
        sg.outputs = [int(i) for i in (sg.outputs if sg.outputs is not None else [])]
        for op in sg.operators or []:
            op.inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            op.outputs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        for t in sg.tensors or []:
            t.shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    return model


def read_tflite(path: str | os.PathLike) -> Any:
    """Read and parse a ``.tflite`` file (:class:`ModelFileError` when missing or not a model)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise ModelFileError(
            f"{p} does not exist", next_step="Check the path of the .tflite file.", path=str(p)
        ) from exc
    except OSError as exc:
        raise ModelFileError(
            f"{p} cannot be read ({exc.strerror})", next_step="Check the file's permissions.", path=str(p)
        ) from exc
    return parse_tflite_bytes(data, name=str(p))


def _pack_buffer_aligned(builder: Any, buffer: Any) -> int:
    """Pack one ``BufferT`` with its data 16-byte aligned (schema: ``force_align: 16``)."""
    s = _schema()
    data_off = None
    if buffer.data is not None:
        payload = np.asarray(buffer.data, dtype=np.uint8).tobytes()
        builder.StartVector(1, len(payload), 16)
        builder.head = builder.head - len(payload)
        builder.Bytes[builder.head : builder.head + len(payload)] = payload
        data_off = builder.EndVector()
    s.BufferStart(builder)
    if data_off is not None:
        s.BufferAddData(builder, data_off)
    s.BufferAddOffset(builder, buffer.offset or 0)
    s.BufferAddSize(builder, buffer.size or 0)
    return s.BufferEnd(builder)


class _AlignedBuffer:
    """Stand-in for ``BufferT`` during packing (``ModelT.Pack`` only calls ``.Pack(builder)``)."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer

    def Pack(self, builder: Any) -> int:  # noqa: N802 (flatbuffers object API name)
        return _pack_buffer_aligned(builder, self.buffer)


def tflite_to_bytes(model: Any) -> bytes:
    """Serialise a ``ModelT`` with the 'TFL3' identifier."""
    import flatbuffers

    total = sum(len(b.data) for b in model.buffers or [] if b.data is not None)
    if total > 2**31 - 2**24:
        raise ExportError(
            f"the model's weights ({total} bytes) exceed what one flatbuffer can hold (2 GiB)",
            next_step="Export a smaller model; buffers stored past the flatbuffer are not written here.",
        )
    builder = flatbuffers.Builder(total + 2**20)
    original = model.buffers
    model.buffers = [_AlignedBuffer(b) for b in original or []]
    try:
        root = model.Pack(builder)
    finally:
        model.buffers = original
    builder.Finish(root, file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def write_atomic(data: bytes, out_path: str | os.PathLike) -> Path:
    """Write bytes to a temporary name in the same folder, then rename: never a half-written file."""
    out = Path(out_path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write {out} ({exc.strerror})",
            next_step="Choose a writable output folder.",
            path=str(out),
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def write_tflite(model: Any, out_path: str | os.PathLike) -> int:
    """Serialise and write atomically; returns the file's size in bytes."""
    data = tflite_to_bytes(model)
    write_atomic(data, out_path)
    return len(data)


# ---------------------------------------------------------------------------------------------
# inspecting


def op_name(model: Any, op: Any) -> str:
    """Builtin operator name of ``op`` (``"CUSTOM:<code>"`` for custom operators)."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if builtin == builtin_code("CUSTOM"):
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        return f"CUSTOM:{custom}"
    return builtin_name(builtin)


def tensor_name(tensor: Any) -> str:
    name = tensor.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def constant_array(model: Any, tensor: Any) -> np.ndarray | None:
    """The constant value of ``tensor`` in its own layout, or None when it has no data."""
    buf = model.buffers[tensor.buffer]
    if buf.data is None or len(buf.data) == 0:
        return None
    dtype = _NUMPY_OF_TYPE.get(int(tensor.type))
    if dtype is None:
        return None
    arr = np.frombuffer(np.asarray(buf.data, dtype=np.uint8).tobytes(), dtype=dtype)
    shape = tuple(int(d) for d in tensor.shape)
    if int(np.prod(shape, dtype=np.int64)) != arr.size:
        return None
    return arr.reshape(shape)


@dataclass(frozen=True)
class Use:
    """One place where a tensor is read: subgraph, operator index, input position, operator name."""

    subgraph: int
    op_index: int
    input_pos: int
    op: str


def tensor_uses(model: Any) -> dict[tuple[int, int], list[Use]]:
    """(subgraph, tensor) -> every operator input that reads it."""
    uses: dict[tuple[int, int], list[Use]] = {}
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators or []):
            name = op_name(model, op)
            for pos, t in enumerate(op.inputs):
                if t >= 0:
                    uses.setdefault((si, int(t)), []).append(Use(si, oi, pos, name))
    return uses


def buffer_users(model: Any) -> dict[int, int]:
    """buffer index -> how many tensors (in all subgraphs) point at it."""
    count: dict[int, int] = {}
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            count[int(t.buffer)] = count.get(int(t.buffer), 0) + 1
    return count


# ---------------------------------------------------------------------------------------------
# modifying


def ensure_opcode(model: Any, name: str, version: int = 1) -> int:
    """Index of the operator code for builtin ``name``, added when missing."""
    s = _schema()
    code = builtin_code(name)
    for i, oc in enumerate(model.operatorCodes):
        if max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == code and not oc.customCode:
            return i
    oc = s.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def add_buffer(model: Any, array: np.ndarray | None) -> int:
    s = _schema()
    b = s.BufferT()
    if array is not None:
        b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)
    model.buffers.append(b)
    return len(model.buffers) - 1


def add_tensor(
    model: Any,
    subgraph: int,
    name: str,
    shape: tuple[int, ...],
    type_name: str,
    data: np.ndarray | None = None,
) -> int:
    """Append a tensor (constant when ``data`` is given) and return its index."""
    s = _schema()
    t = s.TensorT()
    t.name = name
    t.shape = [int(d) for d in shape]
    t.type = tensor_type(type_name)
    t.buffer = add_buffer(model, data) if data is not None else add_buffer(model, None)
    sg = model.subgraphs[subgraph]
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def make_op(
    model: Any,
    name: str,
    inputs: list[int],
    outputs: list[int],
    options: Any = None,
    options_type: str | None = None,
) -> Any:
    s = _schema()
    op = s.OperatorT()
    op.opcodeIndex = ensure_opcode(model, name)
    op.inputs = list(inputs)
    op.outputs = list(outputs)
    if options is not None:
        op.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
        op.builtinOptions = options
    return op


def detach_constant(model: Any, subgraph: int, tensor_index: int) -> None:
    """Turn a constant tensor into one an operator writes: its data is dropped (buffer shared with
    another tensor: the tensor gets a fresh empty buffer instead, the other keeps the data)."""
    t = model.subgraphs[subgraph].tensors[tensor_index]
    if buffer_users(model).get(int(t.buffer), 0) > 1:
        t.buffer = add_buffer(model, None)
    else:
        model.buffers[t.buffer].data = None


def insert_ops(model: Any, subgraph: int, before: int, ops: list[Any]) -> None:
    """Insert ``ops`` (in order) before operator index ``before`` (execution order is list order)."""
    sg = model.subgraphs[subgraph]
    sg.operators[before:before] = ops


def set_int8_per_channel(
    model: Any, subgraph: int, tensor_index: int, q: np.ndarray, scale: np.ndarray, axis: int
) -> None:
    """Store ``q`` (int8, the tensor's layout) as the tensor's data with per-channel symmetric
    quantization along ``axis`` (zero point 0), the form LiteRT's hybrid kernels read."""
    s = _schema()
    t = model.subgraphs[subgraph].tensors[tensor_index]
    if tuple(q.shape) != tuple(int(d) for d in t.shape):
        raise ExportError(
            f"int8 data of shape {q.shape} does not fit tensor {tensor_name(t)!r} of shape {tuple(t.shape)}",
            next_step="This is a bug in the post-pass.",
        )
    if buffer_users(model).get(int(t.buffer), 0) > 1:
        t.buffer = add_buffer(model, q.astype(np.int8))
    else:
        model.buffers[t.buffer].data = np.frombuffer(q.astype(np.int8).tobytes(), dtype=np.uint8)
    t.type = tensor_type("INT8")
    qp = s.QuantizationParametersT()
    qp.scale = [float(v) for v in np.asarray(scale, dtype=np.float32).ravel()]
    qp.zeroPoint = [0] * len(qp.scale)
    qp.quantizedDimension = int(axis)
    t.quantization = qp
