"""Numerical verification of exported files, and the invariants of palette files.

A file counts as done only after :func:`check_outputs` passed: its outputs on a fixed seeded input
are compared with the reference (the palettized PyTorch model, or the dense file for file sources)
under the format x mode target's tolerance (:mod:`converters.modes`). Every output is compared and
every mismatch collected; one :class:`ExportVerificationError` lists them all with the worst
difference, where it is, and the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.errors import ExportVerificationError, PaletteFileError
from converters.modes import ExportMode, ExportTarget, Tolerance, parse_mode


# ---------------------------------------------------------------- references
def palettized_reference(module, palettes: dict | None):
    """A copy of ``module`` whose palettized parameters hold the decoded weights.

    Returns (copy, missing) where missing lists (name, reason) for palettes naming no parameter
    of that shape. With no palettes the module itself is returned (no copy).
    """
    if not palettes:
        return module, []
    import copy

    import torch

    from converters.onnx import decode_palette

    ref = copy.deepcopy(module).eval()
    params = dict(ref.named_parameters())
    params.update({n: b for n, b in ref.named_buffers()})
    missing = []
    with torch.no_grad():
        for name, p in palettes.items():
            target = params.get(name)
            if target is None:
                missing.append((name, "the model has no parameter of that name"))
                continue
            if tuple(target.shape) != tuple(p.shape):
                missing.append((name, f"parameter shape {list(target.shape)} != palette shape {list(p.shape)}"))
                continue
            target.copy_(torch.from_numpy(decode_palette(p)).to(target.dtype))
    return ref, missing


def torch_outputs(module, x: np.ndarray) -> list[np.ndarray]:
    """Every output of ``module`` for ``x`` (tuples flattened), as float32 numpy arrays."""
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o.detach().cpu().numpy().astype(np.float32) for o in outs]


# ---------------------------------------------------------------- output comparison
@dataclass
class OutputCheck:
    name: str
    max_abs_diff: float
    worst_index: tuple[int, ...]
    reference_value: float
    file_value: float
    allowed_at_worst: float
    effective_atol: float
    passed: bool
    problem: str | None = None


@dataclass
class VerificationReport:
    target: str
    tolerance: Tolerance
    outputs: list[OutputCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs), default=0.0)

    @property
    def effective_atol(self) -> float:
        return max((o.effective_atol for o in self.outputs), default=self.tolerance.atol)

    def describe_failures(self) -> str:
        lines = []
        for o in self.outputs:
            if o.passed:
                continue
            if o.problem:
                lines.append(f"{o.name}: {o.problem}")
            else:
                lines.append(
                    f"{o.name}: worst |diff| {o.max_abs_diff:.3g} at {list(o.worst_index)} "
                    f"(file {o.file_value:.6g}, reference {o.reference_value:.6g}) > allowed {o.allowed_at_worst:.3g} "
                    f"(atol {o.effective_atol:.3g} + rtol {self.tolerance.rtol:g} x |ref|)")
        return "; ".join(lines)


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray], tolerance: Tolerance,
                    names: list[str] | None = None, target: str = "") -> VerificationReport:
    """Compare every output; never raises (see :func:`check_outputs`)."""
    report = VerificationReport(target=target, tolerance=tolerance)
    n = max(len(reference), len(candidate))
    names = list(names or []) + [f"output_{i}" for i in range(len(names or []), n)]
    for i in range(n):
        name = names[i]
        if i >= len(candidate) or i >= len(reference):
            report.outputs.append(OutputCheck(name, float("inf"), (), float("nan"), float("nan"), 0.0,
                                              tolerance.atol, False,
                                              problem=f"missing in the {'file' if i >= len(candidate) else 'reference'}"))
            continue
        ref = np.asarray(reference[i], np.float64)
        got = np.asarray(candidate[i], np.float64)
        if ref.shape != got.shape:
            report.outputs.append(OutputCheck(name, float("inf"), (), float("nan"), float("nan"), 0.0,
                                              tolerance.atol, False,
                                              problem=f"shape {list(got.shape)} != reference {list(ref.shape)}"))
            continue
        eff = tolerance.effective_atol(ref)
        if ref.size == 0:
            report.outputs.append(OutputCheck(name, 0.0, (), 0.0, 0.0, eff, eff, True))
            continue
        diff = np.abs(got - ref)
        diff = np.where(np.isnan(diff), np.inf, diff)
        excess = diff - tolerance.bound(ref)
        worst = np.unravel_index(int(np.argmax(excess)), ref.shape)
        worst_abs = np.unravel_index(int(np.argmax(diff)), ref.shape)
        report.outputs.append(OutputCheck(
            name=name, max_abs_diff=float(diff[worst_abs]), worst_index=tuple(int(v) for v in worst),
            reference_value=float(ref[worst]), file_value=float(got[worst]),
            allowed_at_worst=float(eff + tolerance.rtol * abs(ref[worst])), effective_atol=eff,
            passed=bool(np.all(excess <= 0)),
        ))
    return report


def check_outputs(reference: list[np.ndarray], candidate: list[np.ndarray], target: type[ExportTarget],
                  file: str | Path = "", names: list[str] | None = None,
                  reference_label: str | None = None) -> VerificationReport:
    """Compare under ``target``'s tolerance; raise one error listing every mismatching output."""
    report = compare_outputs(reference, candidate, target.tolerance, names=names, target=target.name())
    if not report.passed:
        bad = [o for o in report.outputs if not o.passed]
        raise ExportVerificationError(
            f"{target.name()} file {Path(file).name or '(in memory)'} differs from {reference_label or target.reference} in "
            f"{len(bad)} of {len(report.outputs)} outputs: {report.describe_failures()}",
            next_step="The file was not kept; rerun with --debug, and report it if the model exports elsewhere.",
            file=str(file), target=target.name(),
            mismatches=[{"output": o.name, "max_abs_diff": o.max_abs_diff, "allowed": o.allowed_at_worst,
                         "index": list(o.worst_index), "problem": o.problem} for o in bad],
        )
    return report


# ---------------------------------------------------------------- palette file invariants
#: Bytes a palette file may hold beyond its reported tensors (graph, names, protobuf framing).
SIZE_SLACK_BYTES = 64 * 1024
SIZE_SLACK_FRACTION = 0.02


def check_palette_file(path: Path | str, exported, dense_bytes: int | None = None) -> dict:
    """ONNX side: at most k distinct codes per palettized tensor (per group / per channel for int8),
    and the file's size consistent with the report.

    Size rule: the file's initializers must equal what ``exported.tensors`` reports for the palette
    tensors; with ``dense_bytes`` (the dense file's size) the palette file must also be within
    ``SIZE_SLACK_BYTES + 2%`` of ``dense_bytes - sum(dense tensor bytes) + sum(palette file bytes)``.
    Returns a summary dict; raises :class:`PaletteFileError` listing every violation.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    mode = parse_mode(exported.mode)
    problems: list[str] = []
    if mode is ExportMode.DENSE:
        return {"checked_tensors": 0}
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    for t in exported.tensors:
        k = int(t["clusters"])
        for name in t["file_tensors"]:
            if name not in inits:
                problems.append(f"{t['name']}: file tensor {name} is missing")
        arrays = {n: numpy_helper.to_array(inits[n]) for n in t["file_tensors"] if n in inits}
        stored = sum(len(a.tobytes()) for a in arrays.values())
        if stored != int(t["file_bytes"]):
            problems.append(f"{t['name']}: stores {stored} bytes, report says {t['file_bytes']}")
        for name, a in arrays.items():
            if a.dtype == np.uint8 and name.endswith("palette_indices"):
                if a.size and int(a.max()) >= k:
                    problems.append(f"{t['name']}: index {int(a.max())} >= {k} clusters")
                if t["groups"] == 1 and np.unique(a).size > k:
                    problems.append(f"{t['name']}: {np.unique(a).size} distinct codes > {k}")
                cb = next((arrays[n] for n in arrays if n.endswith("palette_codebook")), None)
                if cb is not None and cb.size != t["groups"] * k:
                    problems.append(f"{t['name']}: codebook holds {cb.size} values, expected {t['groups']} x {k}")
            elif a.dtype == np.int8:
                axis = int(t.get("int8_channel_axes", {}).get(name, 0))
                per_channel = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
                most = max((np.unique(row).size for row in per_channel), default=0)
                if most > k:
                    problems.append(f"{t['name']}: {most} distinct int8 values in one channel > {k}")
    file_bytes = path.stat().st_size
    summary = {"checked_tensors": len(exported.tensors), "file_bytes": file_bytes}
    if dense_bytes is not None:
        expected = int(dense_bytes) - sum(int(t["dense_bytes"]) for t in exported.tensors) + sum(
            int(t["file_bytes"]) for t in exported.tensors)
        slack = SIZE_SLACK_BYTES + SIZE_SLACK_FRACTION * dense_bytes
        summary.update(expected_bytes=expected, dense_bytes=int(dense_bytes))
        if abs(file_bytes - expected) > slack:
            problems.append(f"file is {file_bytes} bytes, the report implies {expected} (+/- {int(slack)})")
    if problems:
        raise PaletteFileError(
            f"palette file {path.name} breaks its invariants: " + "; ".join(problems),
            next_step="The file was not kept; this is a bug in the exporter, please report it.",
            path=str(path), problems=problems)
    return summary
