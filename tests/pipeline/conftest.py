"""Shared fixtures for tests/pipeline/ (generic: the default model and its data split).

The session-scoped model is shared by many tests: do not modify it in place; take
``copy.deepcopy(default_model.module)`` when a test needs to change weights.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def default_model():
    """``pipeline.sources.load_model("default")``: the bundled MixViT (a LoadedModel, eval mode)."""
    from pipeline.sources import load_model

    return load_model("default")


@pytest.fixture(scope="session")
def default_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The default model's 1,000-image test split: x float32 (N, 1, 28, 28) normalised, y int64."""
    from pipeline.data import load_default_dataset

    x, y = load_default_dataset("test")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@pytest.fixture(scope="session")
def default_batch(default_test_split) -> np.ndarray:
    """The first 64 test images: a small real batch for fidelity checks."""
    return default_test_split[0][:64]
