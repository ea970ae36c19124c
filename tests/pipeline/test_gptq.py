"""GPTQ palette assignment: its calibration statistics, its error, its codebook refit, its config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.palettize import PalettizeConfig, bits_per_weight, palettize
from pipeline.palettize.apply import palettize_array
from pipeline.palettize.gptq import LayerHessian, _Layer, collect_hessians, compensate, refit_codebook


class _SamePad(torch.nn.Module):
    """Pads before convolving (TensorFlow 'same'), as EfficientNet ports do; padding=0 on the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = torch.nn.ZeroPad2d((1, 2, 1, 2))
        self.conv = torch.nn.Conv2d(6, 6, 4, stride=2, groups=3, bias=False)

    def forward(self, x):
        return self.conv(self.pad(x))


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.same = _SamePad()
        self.fc = torch.nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.same(torch.relu(self.c1(x)))).flatten(1))


def _patches(x: torch.Tensor, k: int, stride: int, pad: tuple[int, int, int, int]) -> torch.Tensor:
    return torch.nn.functional.unfold(torch.nn.functional.pad(x, pad), k, stride=stride)


def test_statistics_are_the_mean_outer_product_of_the_real_layer_inputs() -> None:
    torch.manual_seed(0)
    net = _Net().double().eval()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    h = collect_hessians(net, x, ["c1.weight", "same.conv.weight", "fc.weight"])
    # Linear: mean of x x^T over rows
    with torch.no_grad():
        a1 = torch.relu(net.c1(x))
        a2 = torch.relu(net.same(a1)).flatten(1)
    np.testing.assert_allclose(h["fc.weight"].h[0], (a2.T @ a2 / len(a2)).numpy(), rtol=1e-10, atol=1e-12)
    assert h["fc.weight"].samples == 5
    # conv with symmetric padding 1
    cols = _patches(x, 3, 1, (1, 1, 1, 1))  # (N, 27, 64)
    ref = torch.einsum("ndl,nel->de", cols, cols) / (cols.shape[0] * cols.shape[2])
    np.testing.assert_allclose(h["c1.weight"].h[0], ref.numpy(), rtol=1e-10, atol=1e-12)
    # grouped conv behind an explicit asymmetric pad: one H per group, from the padded patches
    cols = _patches(a1, 4, 2, (1, 2, 1, 2)).reshape(5, 3, 2 * 16, -1)
    ref = torch.einsum("ngdl,ngel->gde", cols, cols) / (5 * cols.shape[3])
    assert h["same.conv.weight"].h.shape == (3, 32, 32)
    np.testing.assert_allclose(h["same.conv.weight"].h, ref.numpy(), rtol=1e-10, atol=1e-12)


def _correlated_layer(seed: int, out: int = 24, d: int = 40, n: int = 400):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * 0.4 + np.eye(d)
    x = rng.normal(size=(n, d)) @ mix  # strongly correlated inputs: where error feedback pays
    w = rng.normal(size=(out, d)) * rng.uniform(0.2, 2.0, size=(out, 1))
    return w.astype(np.float32), LayerHessian(h=(x.T @ x / n)[None], samples=n), x


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("int8_grid", [False, True])
def test_gptq_beats_nearest_on_the_layer_output(seed: int, int8_grid: bool) -> None:
    w, hess, x = _correlated_layer(seed)
    cfg = PalettizeConfig(clusters=8, int8_grid=int8_grid)
    pal = palettize_array("w", w, cfg, hess.diagonal_importance(w.shape))
    snap = (lambda c: np.clip(np.rint(c), -127, 127)) if int8_grid else None
    codebook, labels, info = compensate(w, hess, pal.codebook, pal.group_of_channel(), pal.scale, snap=snap)

    def out_err(codes: np.ndarray, idx: np.ndarray) -> float:
        dec = codes[0][idx] * (1.0 if pal.scale is None else pal.scale[:, None])
        return float(np.square((w - dec) @ x.T).mean())

    nearest, gptq = out_err(pal.codebook, pal.indices), out_err(codebook, labels)
    assert gptq < 0.7 * nearest, (gptq, nearest)
    assert info["final"] < 0.7 * info["nearest"]
    assert labels.shape == w.shape and labels.max() < codebook.shape[1]
    if int8_grid:
        assert np.array_equal(codebook, np.rint(codebook)) and np.abs(codebook).max() <= 127


def test_refit_solves_the_least_squares_problem_for_fixed_labels() -> None:
    w, hess, _ = _correlated_layer(3, out=6, d=10)
    k = 4
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, size=(1, 6, 10))
    book_of_row = np.array([0, 0, 0, 1, 1, 1])
    start = np.zeros((2, k))
    layer = _Layer.build(w, hess, book_of_row, None)
    got = refit_codebook(layer, start, labels, steps=50)
    # the same problem written out densely: minimise sum_r (w_r - A_r c)^T H (w_r - A_r c)
    h = hess.h[0]
    m = np.zeros((2 * k, 2 * k))
    b = np.zeros(2 * k)
    for r in range(6):
        a = np.zeros((10, 2 * k))
        a[np.arange(10), book_of_row[r] * k + labels[0, r]] = 1.0
        m += a.T @ h @ a
        b += a.T @ h @ w[r]
    used = np.diag(m) > 0
    want = np.linalg.lstsq(m[np.ix_(used, used)], b[used], rcond=None)[0]
    np.testing.assert_allclose(got.reshape(-1)[used], want, rtol=1e-6, atol=1e-8)


def test_config_checks_the_new_fields() -> None:
    for bad in ({"sensitivity": "hessian"}, {"assignment": "round"}, {"target_bits": 0},
                {"target_bits": float("nan")}, {"target_bits": True}, {"target_bits": "6"}):
        with pytest.raises(ConfigError) as err:
            PalettizeConfig(**bad)
        assert next(iter(bad)) in str(err.value)
    cfg = PalettizeConfig(target_bits=6, sensitivity="fisher", assignment="gptq")
    assert cfg.needs_calibration and cfg.target_bits == 6.0
    assert PalettizeConfig.from_dict(cfg.to_dict()) == cfg
    assert not PalettizeConfig().needs_calibration
    assert PalettizeConfig(overrides={"fc": {"assignment": "gptq"}}).needs_calibration


def test_gptq_without_calibration_is_a_clear_error() -> None:
    net = _Net()
    with pytest.raises(ConfigError, match="calibration"):
        palettize(net, PalettizeConfig(weight_threshold=0, assignment="gptq"))
    with pytest.raises(ConfigError, match="calibration"):
        palettize(net, PalettizeConfig(weight_threshold=0, sensitivity="activation"))


def test_budget_and_gptq_through_palettize() -> None:
    torch.manual_seed(1)
    net = _Net().eval()
    x = torch.randn(256, 3, 8, 8)  # enough inputs for GPTQ on every layer (fc has 96 columns)
    cfg = PalettizeConfig(weight_threshold=0, target_bits=5, sensitivity="activation", assignment="gptq",
                          algorithm="lloyd")
    result = palettize(net, cfg, calibration=x)
    assert result.budget is not None
    assert bits_per_weight(result.palettes) <= 5.0 + 1e-9
    assert result.config.overrides and result.config.target_bits == 5.0
    nearest = palettize(net, dataclasses.replace(cfg, assignment="nearest"), calibration=x)
    held_out = torch.randn(64, 3, 8, 8)
    with torch.no_grad():
        ref, got, near = net(held_out), result.model(held_out), nearest.model(held_out)
    assert torch.nn.functional.cosine_similarity(ref, got, dim=1).mean() > 0.99
    assert float(((got - ref) ** 2).mean()) < 0.8 * float(((near - ref) ** 2).mean())  # on inputs it never saw
    for name, pal in result.palettes.items():  # the model carries exactly the decoded palettes
        np.testing.assert_array_equal(dict(result.model.named_parameters())[name].detach().numpy(), pal.decode())


def test_calibration_rows_drop_trailing_padding_only_for_token_models() -> None:
    from pipeline.palettize.gptq import calibration_row

    class Tokens(torch.nn.Module):
        pad_id = 0

    ids = torch.tensor([[5, 0, 3, 0, 0], [0, 0, 0, 0, 0]])
    assert calibration_row(Tokens(), ids, 0).tolist() == [[5, 0, 3]]  # inner padding stays
    assert calibration_row(Tokens(), ids, 1).shape == (1, 5)  # all padding: left as is
    assert calibration_row(torch.nn.Linear(5, 2), ids, 0).shape == (1, 5)  # no pad_id: untouched
    floats = torch.zeros(2, 5)
    assert calibration_row(Tokens(), floats, 0).shape == (1, 5)


def test_statistics_carry_the_fourth_moment_and_shrinkage_follows_the_sample_count() -> None:
    """``fourth`` is the mean of ||x||**4 of the real layer inputs; the Ledoit-Wolf intensity is
    large with fewer samples than columns and 0 (statistics used as they are) with more."""
    rng = np.random.default_rng(0)
    lin = torch.nn.Linear(48, 4)
    # correlated inputs with unequal scales: their true second moment is far from a scaled identity
    mix = (rng.normal(size=(48, 48)) * 0.5 + np.eye(48)) * rng.uniform(0.2, 3.0, size=(1, 48))
    x = torch.from_numpy(rng.normal(size=(30, 48)) @ mix).float()
    (h,) = collect_hessians(lin, x, ["weight"]).values()
    ref = float((x.double().pow(2).sum(1) ** 2).mean())
    np.testing.assert_allclose(h.fourth, [ref], rtol=1e-6)
    few = h.shrinkage()[0]
    many = collect_hessians(lin, torch.from_numpy(rng.normal(size=(3000, 48)) @ mix).float(), ["weight"])["weight"]
    assert many.shrinkage()[0] == 0.0 and many.shrunk() is many
    assert 0.3 < few < 1.0, few
    shrunk = h.shrunk().h[0]
    mu = np.trace(h.h[0]) / 48
    np.testing.assert_allclose(shrunk, (1 - few) * h.h[0] + few * mu * np.eye(48), rtol=1e-10, atol=1e-12)
    assert np.linalg.matrix_rank(h.h[0]) == 30 and np.linalg.matrix_rank(shrunk) == 48
    assert LayerHessian(h=h.h, samples=h.samples).shrunk() is not None  # without fourth: unchanged
    np.testing.assert_array_equal(LayerHessian(h=h.h, samples=h.samples).shrunk().h, h.h)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shrunk_statistics_generalise_when_samples_are_fewer_than_columns(seed: int) -> None:
    """With 40 calibration rows for 96 columns the sample H is singular; GPTQ on it overfits the
    batch, and on the shrunk H its output error on fresh inputs of the same layer is lower."""
    rng = np.random.default_rng(seed)
    d, out = 96, 32
    mix = rng.normal(size=(d, d)) * 0.3 + np.eye(d)
    cal, fresh = rng.normal(size=(40, d)) @ mix, rng.normal(size=(5000, d)) @ mix
    w = (rng.normal(size=(out, d)) * rng.uniform(0.2, 2.0, size=(out, 1))).astype(np.float32)
    lin = torch.nn.Linear(d, out, bias=False)
    hess = collect_hessians(lin, torch.from_numpy(cal).float(), ["weight"])["weight"]
    assert hess.shrinkage()[0] > 0.1
    cfg = PalettizeConfig(clusters=8, int8_grid=True)
    pal = palettize_array("w", w, cfg, hess.diagonal_importance(w.shape))
    snap = lambda c: np.clip(np.rint(c), -127, 127)  # noqa: E731

    def fresh_err(h: LayerHessian) -> float:
        codebook, labels, _ = compensate(w, h, pal.codebook, pal.group_of_channel(), pal.scale, snap=snap)
        dec = codebook[0][labels] * pal.scale[:, None]
        return float(np.square((w - dec) @ fresh.T).mean())

    raw = fresh_err(LayerHessian(h=hess.h, samples=hess.samples))  # no fourth moment: not shrunk
    shrunk = fresh_err(hess)
    assert shrunk < 0.9 * raw, (shrunk, raw)
