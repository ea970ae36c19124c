"""Export formats, export modes, and one small declarative target per format x mode.

Each target states how an exported file is checked against its reference before it counts as
done (in the manner of Hugging Face optimum's per-export tolerances): which reference it is
compared with, and the tolerance. ``check`` in :mod:`converters.verify` applies it to every output
and raises one error listing all mismatches.

Tolerance rule, per element: ``|file - ref| <= atol + atol_of_range * max|ref| + rtol * |ref|``.
``atol_of_range`` scales with the output's magnitude; it is what makes a tolerance for
run-time-quantized activations (palette-int8) meaningful across models whose logits span 0.1 or 100.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipeline.errors import ConfigError


class ExportMode(str, Enum):  # noqa: UP042 - str enums by house style (STYLE.md 1)
    DENSE = "dense"
    PALETTE = "palette"
    PALETTE_INT8 = "palette-int8"


class ExportFormat(str, Enum):  # noqa: UP042
    ONNX = "onnx"
    TFLITE = "tflite"


def parse_mode(value: str | ExportMode) -> ExportMode:
    try:
        return ExportMode(value)
    except ValueError:
        allowed = ", ".join(m.value for m in ExportMode)
        raise ConfigError(f"mode: unknown export mode {value!r}; allowed: {allowed}",
                          next_step="Pick one of the allowed modes.", field="mode", value=str(value)) from None


def parse_format(value: str | ExportFormat) -> ExportFormat:
    try:
        return ExportFormat(value)
    except ValueError:
        allowed = ", ".join(f.value for f in ExportFormat)
        raise ConfigError(f"format: unknown export format {value!r}; allowed: {allowed}",
                          next_step="Pick one of the allowed formats.", field="format",
                          value=str(value)) from None


@dataclass(frozen=True)
class Tolerance:
    """Per-element bound ``atol + atol_of_range * max|ref| + rtol * |ref|``."""

    atol: float
    rtol: float = 0.0
    atol_of_range: float = 0.0

    def __post_init__(self) -> None:
        for field in ("atol", "rtol", "atol_of_range"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ConfigError(f"{field}: must be a finite number >= 0, got {value!r}", field=field)

    def effective_atol(self, reference: np.ndarray) -> float:
        """The absolute part of the bound for this reference output (what a manifest records)."""
        ref_max = float(np.max(np.abs(reference))) if reference.size else 0.0
        return float(self.atol + self.atol_of_range * ref_max)

    def bound(self, reference: np.ndarray) -> np.ndarray:
        return self.effective_atol(reference) + self.rtol * np.abs(reference)


class ExportTarget:
    """One format x mode: its reference and tolerance. Subclasses are registered on definition."""

    format: ClassVar[ExportFormat]
    mode: ClassVar[ExportMode]
    tolerance: ClassVar[Tolerance]
    reference: ClassVar[str]
    why: ClassVar[str]
    registry: ClassVar[dict[tuple[ExportFormat, ExportMode], type[ExportTarget]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        key = (cls.format, cls.mode)
        if key in ExportTarget.registry:
            other = ExportTarget.registry[key].__name__
            raise TypeError(f"export target {key[0].value}/{key[1].value} registered twice ({other}, {cls.__name__})")
        ExportTarget.registry[key] = cls

    @classmethod
    def name(cls) -> str:
        return f"{cls.format.value}/{cls.mode.value}"


_FLOAT_WHY = ("fp32 file with the same weights as the reference; differences are float reordering "
              "in the runtime's kernels (1e-6 typical), so 1e-4 absolute plus 1e-4 relative is strict "
              "yet free of false alarms on deep models")
_PALETTE_WHY = ("the file decodes the palette (Cast -> Gather [-> Mul]) to exactly the reference's "
                "decoded weights, so it must match the palettized PyTorch model as tightly as dense")
_INT8_WHY = ("weights are exact (codebook values are int8 levels times the per-channel scale), but "
             "activations are quantized to uint8 at run time (dynamic range, one scale per tensor), adding "
             "noise that grows with depth. Worst element / max|ref| measured here (ONNX Runtime, 8 seeded "
             "inputs): default model 1.3%, random DeiT-Tiny 3.4%, MobileNetV3-S 1.6%, ResNet-18 0.7%, "
             "EfficientNet-B0 5.4%. 0.2 x max|ref| leaves ~4x headroom for deeper unseen models and still "
             "catches wrong weights, scales or layouts (errors of the whole output range)")


class OnnxDense(ExportTarget):
    format = ExportFormat.ONNX
    mode = ExportMode.DENSE
    tolerance = Tolerance(atol=1e-4, rtol=1e-4)
    reference = "the PyTorch model"
    why = _FLOAT_WHY


class OnnxPalette(ExportTarget):
    format = ExportFormat.ONNX
    mode = ExportMode.PALETTE
    tolerance = Tolerance(atol=1e-4, rtol=1e-4)
    reference = "the palettized PyTorch model (decoded weights)"
    why = _PALETTE_WHY


class OnnxPaletteInt8(ExportTarget):
    format = ExportFormat.ONNX
    mode = ExportMode.PALETTE_INT8
    tolerance = Tolerance(atol=1e-4, rtol=0.0, atol_of_range=0.2)
    reference = "the int8-grid palettized PyTorch model (decoded weights)"
    why = _INT8_WHY


class TfliteDense(ExportTarget):
    format = ExportFormat.TFLITE
    mode = ExportMode.DENSE
    tolerance = Tolerance(atol=1e-4, rtol=1e-4)
    reference = "the PyTorch model"
    why = _FLOAT_WHY


class TflitePalette(ExportTarget):
    format = ExportFormat.TFLITE
    mode = ExportMode.PALETTE
    tolerance = Tolerance(atol=1e-4, rtol=1e-4)
    reference = "the palettized PyTorch model (decoded weights)"
    why = _PALETTE_WHY


class TflitePaletteInt8(ExportTarget):
    format = ExportFormat.TFLITE
    mode = ExportMode.PALETTE_INT8
    tolerance = Tolerance(atol=1e-4, rtol=0.0, atol_of_range=0.2)
    reference = "the int8-grid palettized PyTorch model (decoded weights)"
    why = _INT8_WHY


def target_for(format: str | ExportFormat, mode: str | ExportMode) -> type[ExportTarget]:
    """The registered target for ``format`` x ``mode`` (raises ConfigError naming what exists)."""
    key = (parse_format(format), parse_mode(mode))
    try:
        return ExportTarget.registry[key]
    except KeyError:
        known = ", ".join(t.name() for t in ExportTarget.registry.values())
        raise ConfigError(f"no export target for {key[0].value}/{key[1].value}; known: {known}") from None


def file_suffix(format: str | ExportFormat) -> str:
    return {ExportFormat.ONNX: ".onnx", ExportFormat.TFLITE: ".tflite"}[parse_format(format)]


@dataclass
class ExportedFile:
    """What an exporter wrote: the file, its mode, and per-tensor palette facts.

    ``tensors``: one dict per palettized tensor (name, file tensor names, shape, clusters,
    distinct codes, groups, layout, form, dense_bytes, file_bytes). ``left_dense``: (name, reason)
    for every palette that could not be placed and was left as fp32.
    """

    path: Path
    format: ExportFormat
    mode: ExportMode
    bytes: int
    sha256: str
    tensors: list[dict]
    left_dense: list[tuple[str, str]]

    @classmethod
    def of(cls, path: Path, format: ExportFormat, mode: ExportMode, tensors: list[dict] | None = None,
           left_dense: list[tuple[str, str]] | None = None) -> ExportedFile:
        """Describe a file that is already written: size and sha256 are read from it."""
        return cls(path, format, mode, path.stat().st_size, sha256_of(path), list(tensors or []),
                   list(left_dense or []))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
