"""Export bundles: one verified model file + golden input/output + manifest.json, written atomically.

A bundle is built in ``<out>/<name>.partial-<pid>``: export, verify against the reference, check the
palette file's invariants, write the golden files (the golden output comes from the file itself run
on the host, after it passed), write and validate the manifest, then rename the folder to
``<out>/<name>``. Anything failing on the way removes the partial folder, so no bundle that looks
complete is ever left behind by a failed export.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from converters.errors import BundleError, ConfigError, ExportUnavailableError, OutputError
from converters.modes import (
    ExportedFile,
    ExportFormat,
    ExportMode,
    file_suffix,
    parse_format,
    parse_mode,
    sha256_of,
    target_for,
)
from converters.runtimes import runner_for
from converters.verify import VerificationReport, check_outputs, check_palette_file

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
MANIFEST = "manifest.json"
GOLDEN_INPUT = "golden_input.npy"
GOLDEN_OUTPUT = "golden_output.npy"
CHECK_SEED = 1234
CHECK_BATCH = 2

Reference = Callable[[np.ndarray], list[np.ndarray]]


@lru_cache(maxsize=1)
def manifest_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate_manifest(manifest: dict, where: str = "manifest") -> None:
    """Raise BundleError naming every schema violation."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema(), format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        text = "; ".join(f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors[:10])
        raise BundleError(f"{where} does not match converters/manifest.schema.json: {text}",
                          next_step="Export the bundle again with this version of the tool.")


@dataclass
class Bundle:
    path: Path
    manifest: dict
    exported: ExportedFile | None = None
    verification: VerificationReport | None = None
    extras: dict = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest["model_file"]

    def golden(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.load(self.path / self.manifest["golden_input"]), np.load(self.path / self.manifest["golden_output"]))


def check_inputs(golden_input: np.ndarray, seed: int = CHECK_SEED, batch: int = CHECK_BATCH) -> dict[str, np.ndarray]:
    """The fixed inputs every file is verified on: the golden input and a seeded normal batch."""
    rng = np.random.default_rng(seed)
    extra = rng.standard_normal((batch, *golden_input.shape[1:])).astype(np.float32)
    return {"golden": np.ascontiguousarray(golden_input, np.float32), f"seeded_normal_b{batch}_s{seed}": extra}


def _versions(format: ExportFormat) -> dict[str, str]:
    names = ["onnx", "onnxruntime", "torch"] if format is ExportFormat.ONNX else ["litert-torch", "ai-edge-litert", "torch"]
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def _exporter_for(format: ExportFormat):
    if format is ExportFormat.ONNX:
        from converters.onnx import export_onnx

        return export_onnx
    try:
        from converters.tflite import export_tflite
    except ImportError as err:
        raise ExportUnavailableError(f"TFLite export is not available here ({err})",
                                     next_step="Install litert-torch and ai-edge-litert, or leave out --formats tflite.") from err
    return export_tflite


def _write_json_atomic(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _palette_section(exported: ExportedFile) -> dict:
    tensors = []
    for t in exported.tensors:
        tensors.append({k: v for k, v in t.items() if k not in ("file_tensors", "int8_channel_axes")})
    return {
        "tensors": tensors,
        "left_dense": [{"name": n, "reason": r} for n, r in exported.left_dense],
        "palettized_bytes": int(sum(t["file_bytes"] for t in exported.tensors)),
        "dense_bytes": int(sum(t["dense_bytes"] for t in exported.tensors)),
    }


def write_bundle(
    export: Callable[[Path], ExportedFile],
    *,
    reference: Reference,
    golden_input: np.ndarray,
    out_dir: Path | str,
    name: str,
    format: ExportFormat | str,
    mode: ExportMode | str,
    source_model: str,
    model_name: str,
    palettize_config: dict | None = None,
    dense_bytes: int | None = None,
    notes: list[str] | None = None,
    reference_label: str | None = None,
) -> Bundle:
    """Build one bundle: ``export(path)`` writes the file, ``reference(x)`` gives the expected outputs.

    ``dense_bytes``: size of the dense file of the same format, for the palette size check.
    """
    format, mode = parse_format(format), parse_mode(mode)
    target = target_for(format, mode)
    out_dir = Path(out_dir)
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"bundle name {name!r} must be a plain folder name", field="name")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {out_dir}: {err}", next_step="Pick a writable --out.") from err
    final = out_dir / name
    partial = out_dir / f"{name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        model_file = f"model{file_suffix(format)}"
        exported = export(partial / model_file)
        inputs = check_inputs(golden_input)
        run = runner_for(exported.path, threads=1)
        report = None
        for label, x in inputs.items():
            rep = check_outputs(reference(x), run(x), target, file=exported.path, reference_label=reference_label)
            if report is None or rep.max_abs_diff > report.max_abs_diff:
                report = rep
            if label == "golden":
                golden_report = rep
        palette_summary = check_palette_file(exported.path, exported, dense_bytes=dense_bytes) \
            if format is ExportFormat.ONNX else {}
        golden_out = run(inputs["golden"])
        np.save(partial / GOLDEN_INPUT, inputs["golden"])
        np.save(partial / GOLDEN_OUTPUT, golden_out[0])
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "source_model": source_model,
            "model_name": model_name,
            "format": format.value,
            "mode": mode.value,
            "model_file": model_file,
            "bytes": exported.path.stat().st_size,
            "sha256": sha256_of(exported.path),
            "golden_input": GOLDEN_INPUT,
            "golden_output": GOLDEN_OUTPUT,
            "atol": float(golden_report.outputs[0].effective_atol) if golden_report.outputs else target.tolerance.atol,
            "rtol": float(target.tolerance.rtol),
            "tolerance": {"target": target.name(), "atol": target.tolerance.atol, "rtol": target.tolerance.rtol,
                          "atol_of_range": target.tolerance.atol_of_range, "reference": target.reference,
                          "why": target.why},
            "palette": _palette_section(exported),
            "palettize_config": palettize_config,
            "input_shape": [int(s) for s in inputs["golden"].shape],
            "output_shape": [int(s) for s in golden_out[0].shape],
            "input_dtype": "float32",
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "verification": {
                "passed": True,
                "reference": reference_label or target.reference,
                "max_abs_diff": float(report.max_abs_diff),
                "inputs": list(inputs),
                "outputs": [{"name": o.name, "max_abs_diff": o.max_abs_diff, "effective_atol": o.effective_atol}
                            for o in report.outputs],
                "palette_file": palette_summary,
            },
            "exporter": {"tool": "converters", "versions": _versions(format), "notes": list(notes or [])},
        }
        validate_manifest(manifest, where=f"manifest of {name}")
        _write_json_atomic(partial / MANIFEST, manifest)
        if final.exists():
            old = out_dir / f"{name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(partial, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    exported.path = final / model_file
    return Bundle(path=final, manifest=manifest, exported=exported, verification=report)


def export_bundle(
    module,
    example_input,
    format: ExportFormat | str,
    mode: ExportMode | str,
    palettes: dict | None,
    out_dir: Path | str,
    *,
    name: str | None = None,
    source_model: str = "",
    model_name: str | None = None,
    palettize_config: dict | None = None,
    dense_bytes: int | None = None,
) -> Bundle:
    """Export a PyTorch module in one format x mode, verified against the palettized PyTorch model."""
    from converters.verify import palettized_reference, torch_outputs

    format, mode = parse_format(format), parse_mode(mode)
    exporter = _exporter_for(format)
    ref_module, _ = palettized_reference(module, palettes if mode is not ExportMode.DENSE else None)
    golden = np.ascontiguousarray(example_input.detach().cpu().numpy(), np.float32)
    model_name = model_name or source_model or type(module).__name__
    return write_bundle(
        lambda path: exporter(module, example_input, mode, palettes if mode is not ExportMode.DENSE else None, path),
        reference=lambda x: torch_outputs(ref_module, x),
        golden_input=golden,
        out_dir=out_dir,
        name=name or f"{format.value}-{mode.value}",
        format=format,
        mode=mode,
        source_model=source_model,
        model_name=model_name,
        palettize_config=palettize_config if mode is not ExportMode.DENSE else None,
        dense_bytes=dense_bytes,
    )


def load_bundle(path: Path | str) -> Bundle:
    """Open a bundle folder: validate its manifest against the schema and the model file's sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        partial = ".partial-" in path.name
        raise BundleError(f"{path} holds no {MANIFEST}" + (" (an export that did not finish)" if partial else ""),
                          next_step="Export the bundle again (python -m converters.export ...).", path=str(path))
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BundleError(f"{manifest_path} is not readable JSON: {err}",
                          next_step="Export the bundle again.", path=str(manifest_path)) from err
    validate_manifest(manifest, where=str(manifest_path))
    problems = []
    for key in ("model_file", "golden_input", "golden_output"):
        if not (path / manifest[key]).is_file():
            problems.append(f"{key} {manifest[key]} is missing")
    if not problems:
        model = path / manifest["model_file"]
        if model.stat().st_size != manifest["bytes"]:
            problems.append(f"{manifest['model_file']} is {model.stat().st_size} bytes, manifest says {manifest['bytes']}")
        elif sha256_of(model) != manifest["sha256"]:
            problems.append(f"{manifest['model_file']} sha256 differs from the manifest")
        try:
            gi = np.load(path / manifest["golden_input"])
            if list(gi.shape) != list(manifest["input_shape"]):
                problems.append(f"golden input shape {list(gi.shape)} != input_shape {manifest['input_shape']}")
            np.load(path / manifest["golden_output"])
        except (OSError, ValueError) as err:
            problems.append(f"golden file unreadable: {err}")
    if problems:
        raise BundleError(f"bundle {path} is damaged: " + "; ".join(problems),
                          next_step="Export the bundle again.", path=str(path), problems=problems)
    return Bundle(path=path, manifest=manifest)
