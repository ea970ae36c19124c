"""Sensitivity estimates and sensitivity-weighted k-means: the weights must change the result."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.palettize import PalettizeConfig, palettize
from pipeline.palettize.kmeans1d import kmeans_1d
from pipeline.palettize.sensitivity import estimate_sensitivity


def test_heavily_weighted_point_gets_its_own_centroid() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.0, 1.0, 2000), [0.37]])  # 0.37 sits inside the bulk
    plain = kmeans_1d(values, 4)
    assert not np.any(np.isclose(plain.centroids, 0.37, atol=0.02))
    weights = np.ones_like(values)
    weights[-1] = 1e6
    weighted = kmeans_1d(values, 4, weights=weights)
    assert np.any(np.isclose(weighted.centroids, 0.37, atol=1e-3))
    assert weighted.centroids[weighted.labels[-1]] == pytest.approx(0.37, abs=1e-3)


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw(torch.relu(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["fisher", "activation"])
def test_shapes_positive_and_model_untouched(method: str) -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    before = copy.deepcopy(net.state_dict())
    x = torch.randn(6, 3, 10, 10)
    sens = estimate_sensitivity(net, x, method=method)
    assert set(sens) == {"conv.weight", "dw.weight", "fc.weight"}
    for name, s in sens.items():
        assert s.shape == tuple(dict(net.named_parameters())[name].shape)
        assert s.dtype == np.float32 and np.all(s > 0) and np.all(np.isfinite(s))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.requires_grad for p in net.parameters())  # flags restored
    assert estimate_sensitivity(net, x, method="none") == {}


def test_activation_sensitivity_follows_input_scale() -> None:
    """Input feature 0 is 10x larger than the others: its weights must look ~100x more important."""
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(64, 4)
    x[:, 0] *= 10
    s = estimate_sensitivity(lin, x, ["weight"], method="activation", floor=0.0)["weight"]
    ratio = s[:, 0].mean() / s[:, 1:].mean()
    assert 30 < ratio < 300


def test_fisher_sees_dead_inputs() -> None:
    """A weight whose input is always zero has no effect on the output: Fisher ~ floor only."""
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(16, 4)
    x[:, 2] = 0
    s = estimate_sensitivity(lin, x, ["weight"], method="fisher", output_kind="dense", floor=0.0)["weight"]
    assert np.all(s[:, 2] == 0) and np.all(s[:, [0, 1, 3]] > 0)


def test_bad_method_and_names() -> None:
    lin = torch.nn.Linear(4, 3)
    with pytest.raises(ConfigError, match="sensitivity must be one of"):
        estimate_sensitivity(lin, torch.randn(2, 4), method="hessian")
    with pytest.raises(ConfigError, match="no parameter named"):
        estimate_sensitivity(lin, torch.randn(2, 4), ["nope.weight"])


@pytest.mark.slow  # palettizes the default model twice (~15 s)
def test_weighted_palettes_lower_the_weighted_error(default_model, default_batch) -> None:
    """Sensitivity-weighted k-means must beat plain k-means on the error it is weighted by."""
    config = PalettizeConfig(clusters=16)
    module = default_model.module
    plain = palettize(module, config)
    sens = estimate_sensitivity(module, default_batch[:8], list(plain.palettes), method="fisher")
    weighted = palettize(module, config, sample_weights=sens)
    params = dict(module.named_parameters())
    better = 0
    for name, pal in plain.palettes.items():
        w = params[name].detach().numpy()
        e_plain = float((sens[name] * (pal.decode() - w) ** 2).sum())
        e_weighted = float((sens[name] * (weighted.palettes[name].decode() - w) ** 2).sum())
        assert e_weighted <= e_plain * 1.02
        better += e_weighted < e_plain
    assert better >= len(plain.palettes) // 2


class _TwoHeads(torch.nn.Module):
    """Two identical-looking heads on the same input; the second reaches the output 100x damped."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.loud = torch.nn.Linear(width, width // 2)
        self.quiet = torch.nn.Linear(width, width // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loud(x) + 0.01 * self.quiet(x)


def test_output_sensitivity_scales_layers_by_their_effect_on_the_output() -> None:
    torch.manual_seed(0)
    net = _TwoHeads().eval()
    with torch.no_grad():
        net.quiet.weight.copy_(net.loud.weight.flip(0))  # same values, so only the damping differs
    before = copy.deepcopy(net.state_dict())
    x = torch.randn(48, 16)
    x[:, 3] *= 5
    act = estimate_sensitivity(net, x, method="activation", floor=0.0)
    out = estimate_sensitivity(net, x, method="output", output_kind="dense", floor=0.0)
    for name in act:  # within a layer: the activation pattern, only scaled
        ratio = out[name] / act[name]
        assert np.allclose(ratio, ratio.flat[0], rtol=1e-4)
    # activation rates both heads alike; the output knows the quiet one matters 1e4x less
    assert act["loud.weight"].mean() == pytest.approx(act["quiet.weight"].mean(), rel=1e-6)
    loud_over_quiet = out["loud.weight"].mean() / out["quiet.weight"].mean()
    assert 3e3 < loud_over_quiet < 3e4
    for k, v in net.state_dict().items():  # every probed layer put back
        assert torch.equal(v, before[k])


def test_output_sensitivity_budget_spends_bits_where_the_output_suffers() -> None:
    torch.manual_seed(0)
    net = _TwoHeads(width=128).eval()
    with torch.no_grad():
        net.quiet.weight.copy_(net.loud.weight.flip(0))
    x = torch.randn(48, 128)
    clusters = {}
    for method in ("activation", "output"):
        cfg = PalettizeConfig(sensitivity=method, target_bits=4, weight_threshold=1, algorithm="lloyd")
        result = palettize(net, cfg, calibration=x)
        clusters[method] = {n: p.k for n, p in result.palettes.items()}
        assert result.budget.bits_per_weight <= 4
    # alike to activation (one tie-breaking step apart at most); far apart once the output is measured
    assert 0.5 <= clusters["activation"]["loud.weight"] / clusters["activation"]["quiet.weight"] <= 2
    assert clusters["output"]["loud.weight"] >= 4 * clusters["output"]["quiet.weight"]
