"""The README's commands exist: every `python -m MODULE --flag` it shows is accepted by that module."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMAND = re.compile(r"python -m ([a-z_.]+)((?: [^`|\n]*)?)")


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for module, rest in COMMAND.findall(README):
        flags = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)
        found.append((module, flags))
    return found


@cache
def _help(module: str) -> str:
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"python -m {module} --help failed: {out.stderr[-500:]}"
    return out.stdout


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert first_block == [
        "bash scripts/setup.sh && .venv/bin/python -m pipeline.deploy --device sim",
        "bash scripts/test.sh",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


@pytest.mark.parametrize(("module", "flags"), _commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_readme_command_is_accepted(module: str, flags: list[str]) -> None:
    text = _help(module)
    missing = [f for f in flags if f not in text]
    assert not missing, f"README shows python -m {module} with {missing}, which its --help does not list"
