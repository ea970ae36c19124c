"""Fixtures for the Java core tests: find the JDK and JUnit, run android_app/core/run_tests.sh once."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "android_app" / "core"
RUN_TESTS = CORE / "run_tests.sh"
JUNIT_JARS = (Path("/usr/share/java/junit4.jar"), Path("/usr/share/java/junit4-4.13.2.jar"))
HAMCREST_JARS = (Path("/usr/share/java/hamcrest-core.jar"), Path("/usr/share/java/hamcrest.jar"))


def java_missing_reason() -> str | None:
    """Why the Java tests cannot run here, or None when they can."""
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            return f"{tool} not found: install Debian's default-jdk-headless"
    if not any(j.is_file() for j in JUNIT_JARS) and not os.environ.get("JUNIT_JAR"):
        return "junit4.jar not found in /usr/share/java: install Debian's junit4 package"
    if not any(j.is_file() for j in HAMCREST_JARS) and not os.environ.get("HAMCREST_JAR"):
        return "hamcrest jar not found in /usr/share/java: install Debian's junit4 package (libhamcrest-java)"
    return None


@dataclass(frozen=True)
class JavaRun:
    """One run of run_tests.sh: its exit code, output, and where the Java tests left their results."""

    returncode: int
    output: str
    results_dir: Path
    classes_dir: Path


@pytest.fixture(scope="session")
def java_run(tmp_path_factory: pytest.TempPathFactory) -> JavaRun:
    reason = java_missing_reason()
    if reason:
        pytest.skip(reason)
    results_dir = tmp_path_factory.mktemp("java-contract-results")
    env = dict(os.environ, RESULTS_OUT=str(results_dir))
    proc = subprocess.run(
        ["bash", str(RUN_TESTS)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    return JavaRun(proc.returncode, proc.stdout + proc.stderr, results_dir, CORE / "build" / "classes")
