"""Errors raised by the export side; each derives from the project's tree in ``pipeline.errors``."""

from __future__ import annotations

from pipeline.errors import ConfigError, ExportError, ModelLoadError, OutputError

__all__ = [
    "BundleError",
    "ConfigError",
    "ExportError",
    "ExportUnavailableError",
    "ExportVerificationError",
    "ModelFileError",
    "OutputError",
    "PaletteFileError",
]


class ExportVerificationError(ExportError):
    """An exported file whose outputs differ from the reference by more than the target's tolerance.

    ``facts["mismatches"]`` holds one dict per mismatching output (name, worst difference,
    tolerance, where); the message lists every one of them.
    """


class PaletteFileError(ExportError):
    """A palette file that breaks its invariants (too many distinct codes, size not as reported)."""


class ModelFileError(ModelLoadError):
    """A model file (ONNX or TFLite) that is missing, truncated or not a model at all."""


class BundleError(ExportError):
    """A bundle folder whose manifest is missing, invalid, or does not match its files."""


class ExportUnavailableError(ExportError):
    """An export format whose converter is not installed or not importable here."""
