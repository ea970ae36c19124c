"""In CI, the tools behind the `adb`, `browser` and `java` tests must be there: those tests skip
on a developer's machine without them, and a skip in CI would hide that they never ran."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every tool")


@pytest.mark.parametrize("tool", ["adb", "chromium", "javac", "java"])
def test_tool_on_path(tool: str) -> None:
    assert shutil.which(tool), f"{tool} is missing: scripts/setup.sh --test should have installed it"


def test_junit4_jar() -> None:
    assert Path("/usr/share/java/junit4.jar").is_file(), "junit4 is missing (apt-get install junit4)"


def test_postgres_binaries() -> None:
    assert list(Path("/usr/lib/postgresql").glob("*/bin/initdb")), "postgresql is missing (apt-get install postgresql)"
