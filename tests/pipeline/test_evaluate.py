"""Accuracy and output fidelity: properties that hold for any model and data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError, DataError
from pipeline.evaluate import output_fidelity, predict_logits, top1_accuracy


class _Lookup(nn.Module):
    """Predicts the class stored in the first pixel: a model whose accuracy is known exactly."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), self.classes).float()


def _data(n=103, classes=4, wrong=17, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    pred = y.copy()
    flip = rng.choice(n, wrong, replace=False)
    pred[flip] = (pred[flip] + 1) % classes
    x = np.zeros((n, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = pred
    return x, y


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_top1_accuracy_is_exact_and_batch_independent(batch_size):
    x, y = _data()
    assert top1_accuracy(_Lookup(), x, y, batch_size=batch_size) == pytest.approx((103 - 17) / 103)


def test_top1_accuracy_on_numpy_callable():
    x, y = _data(wrong=0)
    runner = lambda a: np.eye(4, dtype=np.float32)[a[:, 0, 0, 0].astype(int)]  # noqa: E731
    assert top1_accuracy(runner, x, y) == 1.0


def test_default_model_accuracy_beats_chance_by_far(default_model, default_test_split):
    x, y = default_test_split
    assert top1_accuracy(default_model.module, x[:200], y[:200]) > 0.5


def test_fidelity_identical_and_perturbed(default_model, default_batch):
    same = output_fidelity(default_model.module, default_model.module, default_batch)
    assert same["max_abs_diff"] == 0 and same["top1_agreement"] == 1.0 and same["n"] == len(default_batch)
    noisy = copy.deepcopy(default_model.module)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    diff = output_fidelity(default_model.module, noisy, default_batch)
    assert diff["max_abs_diff"] > 0
    assert diff["max_abs_diff"] >= diff["mean_abs_diff"] > 0
    assert 0 <= diff["top1_agreement"] <= 1 and diff["cosine_mean"] < 1
    # precomputed logits are accepted in place of a model, with the same answer
    logits = predict_logits(noisy, default_batch)
    assert output_fidelity(default_model.module, logits, default_batch) == diff


def test_fidelity_counts_disagreements():
    x, _ = _data(n=50, wrong=0)
    ref = _Lookup()
    shifted = lambda a: np.roll(ref(torch.from_numpy(a)).numpy(), 1, axis=1)  # noqa: E731  every row disagrees
    result = output_fidelity(ref, shifted, x)
    assert result["top1_agreement"] == 0.0 and result["max_abs_diff"] == 1.0


def test_bad_inputs():
    x, y = _data()
    with pytest.raises(DataError, match="103 inputs but 5 labels"):
        top1_accuracy(_Lookup(), x, y[:5])
    with pytest.raises(DataError, match="differ in shape"):
        output_fidelity(_Lookup(4), _Lookup(5), x)
    with pytest.raises(ConfigError, match="batch_size"):
        top1_accuracy(_Lookup(), x, y, batch_size=0)
    with pytest.raises(ConfigError, match="cannot evaluate a str"):
        top1_accuracy("model.onnx", x, y)
    with pytest.raises(DataError, match="non-empty"):
        predict_logits(_Lookup(), np.zeros((0, 1, 2, 2), np.float32))
