"""Accuracy and output fidelity: how much a change (palettization, export, skipping) costs.

``top1_accuracy`` scores a model on labelled data (normally the default test split from
:func:`pipeline.data.load_default_dataset`); ``output_fidelity`` compares two models' logits on
the same batch. Models are anything that maps a batch to logits: a ``torch.nn.Module``, a plain
callable taking and returning numpy arrays (an ONNX Runtime or LiteRT runner), or, for
``output_fidelity``, an array of logits already computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, DataError


def predict_logits(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """float32 logits of ``model`` on ``x``, computed in batches (torch models without grad, on CPU)."""
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"input batch must be a non-empty array with a batch axis, got shape {x.shape}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(model, np.ndarray):
        return model.astype(np.float32, copy=False)
    outputs = []
    if _is_torch_module(model):
        import torch

        was_training = model.training
        try:
            model.eval()
        except NotImplementedError:  # a torch.export module without our train/eval patch
            pass
        try:
            with torch.no_grad():
                for i in range(0, len(x), batch_size):
                    out = model(torch.from_numpy(np.array(x[i:i + batch_size], dtype=np.float32)))  # a writable copy
                    outputs.append(_first_tensor(out).detach().float().cpu().numpy())
        finally:
            if was_training:
                model.train()
    elif callable(model):
        fn: Callable[[np.ndarray], Any] = model
        for i in range(0, len(x), batch_size):
            outputs.append(np.asarray(fn(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))))
    else:
        raise ConfigError(f"cannot evaluate a {type(model).__name__}: expected a torch.nn.Module, "
                          "a callable on numpy arrays, or an array of logits")
    return np.concatenate(outputs, axis=0).astype(np.float32, copy=False)


def top1_accuracy(module: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of rows whose highest logit is the label."""
    y = np.asarray(y)
    if len(y) != len(x):
        raise DataError(f"{len(x)} inputs but {len(y)} labels")
    logits = predict_logits(module, x, batch_size)
    if logits.ndim != 2:
        raise DataError(f"model output has shape {logits.shape}; top-1 accuracy needs (batch, classes) logits")
    return float(np.mean(logits.argmax(axis=1) == y))


def output_fidelity(reference: Any, candidate: Any, x: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """How closely ``candidate`` reproduces ``reference`` on ``x``.

    Returns ``max_abs_diff`` and ``mean_abs_diff`` of the logits, ``top1_agreement`` (fraction of
    rows with the same arg-max), ``cosine_mean`` (mean per-row cosine similarity) and ``n``.
    """
    ref = predict_logits(reference, x, batch_size)
    cand = predict_logits(candidate, x, batch_size)
    if ref.shape != cand.shape:
        raise DataError(f"the two models' outputs differ in shape: {ref.shape} vs {cand.shape}")
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    ref2 = ref.reshape(len(ref), -1).astype(np.float64)
    cand2 = cand.reshape(len(cand), -1).astype(np.float64)
    denom = np.linalg.norm(ref2, axis=1) * np.linalg.norm(cand2, axis=1)
    cosine = np.where(denom > 0, np.sum(ref2 * cand2, axis=1) / np.where(denom > 0, denom, 1.0), 1.0)
    agree = ref2.argmax(axis=1) == cand2.argmax(axis=1)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float(agree.mean()),
        "cosine_mean": float(cosine.mean()),
        "n": int(len(ref)),
    }


def _is_torch_module(model: Any) -> bool:
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _first_tensor(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return out[0]
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out
