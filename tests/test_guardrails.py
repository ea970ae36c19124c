"""Guardrails from ARCHITECTURE.md: light imports and the layering between packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "tensorflow", "onnx", "onnxruntime", "timm", "litert_torch", "ai_edge_litert")

# package -> top-level modules it must never import (ARCHITECTURE.md, "must not" column)
FORBIDDEN = {
    "device_runner": {"torch", "tensorflow", "timm", "litert_torch", "converters"},
    "results": {"torch", "tensorflow", "timm", "adb_shell", "device_runner", "converters"},
    "converters": {"adb_shell", "device_runner"},
    "pipeline": {"adb_shell", "usb1"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layering(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imports(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "layering broken (see ARCHITECTURE.md):\n" + "\n".join(offenders)


@pytest.mark.parametrize("module", ["pipeline", "pipeline.errors", "pipeline.cli_support", "converters",
                                    "device_runner", "results"])
def test_top_level_imports_stay_light(module: str) -> None:
    code = (
        f"import sys; import {module}; "
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import {module} loaded heavy frameworks: {out.stdout.strip()}"


@pytest.mark.parametrize(("module", "banned"), [
    ("results.collector", ("torch", "tensorflow", "adb_shell")),
    ("results.report", ("torch", "tensorflow", "adb_shell")),
    ("results.store", ("torch", "tensorflow", "adb_shell")),
    ("device_runner.device", ("torch", "tensorflow")),
    ("device_runner.runner", ("torch", "tensorflow")),
    ("device_runner.sim.phone", ("torch", "tensorflow")),
    ("device_runner.sim.benchmark_app", ("torch", "tensorflow")),
    ("pipeline.deploy", ("torch", "tensorflow", "adb_shell")),
])
def test_entry_modules_load_only_what_their_layer_allows(module: str, banned: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {banned!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import {module} loaded {out.stdout.strip()}"
