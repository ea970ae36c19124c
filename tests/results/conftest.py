"""Fixtures for the results tests: contract fixtures, result documents, a collector over HTTP."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "contracts"


def load_fixture(kind: str, validity: str, name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / kind / validity / f"{name}.json").read_text(encoding="utf-8"))


def make_result(run_id: str, **changes: Any) -> dict[str, Any]:
    """A valid ok result (from the shared fixture) with a new run_id and nested changes.

    ``changes`` keys may be dotted (``device.model="Pixel 7"``, ``latency.median_ms=3.0``).
    """
    doc = copy.deepcopy(load_fixture("result", "valid", "ok_simulated_onnx"))
    doc["run_id"] = run_id
    for key, value in changes.items():
        target = doc
        parts = key.split(".")
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value
    lat = doc.get("latency")
    if isinstance(lat, dict) and "latency.median_ms" in changes:
        lat["min_ms"] = min(lat["min_ms"], lat["median_ms"])
        lat["max_ms"] = max(lat["max_ms"], lat["median_ms"])
    return doc


@pytest.fixture
def result_doc() -> Callable[..., dict[str, Any]]:
    return make_result


@pytest.fixture
def collector(tmp_path) -> Iterator[Any]:
    """A real collector (uvicorn in a thread, loopback, free port) over a fresh SQLite file."""
    from results.collector import start_collector_in_thread

    handle = start_collector_in_thread(f"sqlite:///{tmp_path / 'runs.db'}", busy_timeout_s=0.3)
    handle.db_path = tmp_path / "runs.db"
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def client(collector) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=collector.url, timeout=10.0) as c:
        yield c


def _dump_dom(url: str, user_data_dir: Path) -> str:
    """The DOM after the page's script ran (virtual time lets the fetch finish first)."""
    cmd = [
        "/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={user_data_dir}", "--virtual-time-budget=15000",
        "--dump-dom", url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture
def dump_dom():
    """Headless Chromium (Debian's): the DOM of a page after its script ran."""
    return _dump_dom
