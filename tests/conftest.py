"""Suite-wide pytest setup: the `device` marker needs a real phone (--device ADDRESS)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        action="store",
        default=None,
        help="address or serial of a real phone for tests marked `device` (skipped without it)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--device"):
        return
    skip = pytest.mark.skip(reason="needs a real phone: pass --device SERIAL|HOST:PORT")
    for item in items:
        if "device" in item.keywords:
            item.add_marker(skip)
