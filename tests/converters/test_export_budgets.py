"""Grouped codebooks and per-layer cluster budgets survive export to ONNX and TFLite, verified.

A budget gives layers different cluster counts and granularities (per tensor, or one codebook per
group of output channels), so the exporters see codebooks of shape (n_groups, k) with k varying
from layer to layer; `export_bundle` checks the file against the palettized PyTorch model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from converters.bundle import export_bundle, load_bundle
from pipeline.palettize import PalettizeConfig, bits_per_weight, palettize
from pipeline.palettize.budget import BudgetConfig, plan_budget


@pytest.fixture(scope="module")
def budgeted(request) -> dict:
    from pipeline.data import load_default_dataset
    from pipeline.fidelity.measure import clustered_weights
    from pipeline.sources import load_model

    loaded = load_model("default")
    out = {}
    for int8_grid in (False, True):
        base = PalettizeConfig(algorithm="lloyd", int8_grid=int8_grid)
        weights = clustered_weights(loaded.module, base)
        # grouped candidates only (so every layer with > 8 output channels gets grouped codebooks),
        # three cluster counts (so k differs between layers)
        budget = plan_budget(weights, None, BudgetConfig(target_bits=5.0, clusters=(8, 32, 128),
                                                         group_sizes=(8,), int8_grid=int8_grid))
        # GPTQ assignment with codebook refit: its codebooks need not stay sorted, and on the int8
        # grid they are snapped back to integers; the exporters must carry them all the same
        gptq = dataclasses.replace(budget.apply_to(base), assignment="gptq")
        result = palettize(loaded.module, gptq, calibration=load_default_dataset("train")[0][:32])
        out[int8_grid] = (loaded, budget, result)
    return out


@pytest.mark.slow  # four exports with verification (~10-40 s each)
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("mode", ["palette", "palette-int8"])
def test_grouped_budgeted_palettes_export_and_verify(budgeted, fmt: str, mode: str, tmp_path: Path) -> None:
    loaded, budget, result = budgeted[mode == "palette-int8"]
    ks = {p.k for p in result.palettes.values()}
    grouped = [p for p in result.palettes.values() if p.group_size is not None and p.n_groups > 1]
    assert len(ks) >= 2, f"the budget should mix cluster counts, got {ks}"
    assert grouped, "the budget should choose at least one grouped codebook"
    assert bits_per_weight(result.palettes) <= 5.0
    assert result.config.assignment.value == "gptq"
    x = loaded.example_input(batch=1, seed=3)
    bundle = export_bundle(loaded.module, x, fmt, mode, result.palettes, tmp_path, source_model="default",
                           palettize_config=result.config.to_dict())
    assert bundle.verification is not None and bundle.verification.passed, bundle.verification
    reopened = load_bundle(bundle.path)
    manifest = reopened.manifest
    assert manifest["mode"] == mode and manifest["format"] == fmt
    golden_in, golden_out = reopened.golden()
    assert np.all(np.isfinite(golden_out)) and golden_in.shape == tuple(loaded.input_shape)
