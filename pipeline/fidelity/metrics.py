"""Output agreement between a dense model and a compressed copy, by kind of output.

Why per kind: a classifier's outputs are judged by its decisions (top-1 / top-5 agreement and, with
labels, accuracy), an encoder's by the geometry of its embeddings (cosine to the dense embedding,
and whether each input keeps the same nearest neighbour in the set, which is what retrieval
uses), and anything else by per-sample correlation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import DataError

TASKS = ("classifier", "encoder", "dense")


def _rows(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(len(a), -1)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2, b2 = _rows(a), _rows(b)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    return (a2 * b2).sum(axis=1) / np.where(den > 0, den, 1.0)


def nearest_neighbours(emb: np.ndarray) -> np.ndarray:
    """Index of each row's most cosine-similar *other* row."""
    e = _rows(emb)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)


def topk_agreement(ref: np.ndarray, cand: np.ndarray, k: int) -> float:
    """Fraction of rows whose candidate top-1 class is among the reference's top-``k`` classes
    (``k=1``: the same top-1)."""
    ref2, cand2 = _rows(ref), _rows(cand)
    k = min(k, ref2.shape[1])
    top_ref = np.argsort(-ref2, axis=1)[:, :k]
    return float(np.mean((top_ref == cand2.argmax(axis=1)[:, None]).any(axis=1)))


def compare(ref: np.ndarray, cand: np.ndarray, task: str, y: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement metrics of ``cand`` against ``ref`` (same inputs, batch first)."""
    if ref.shape != cand.shape:
        raise DataError(f"outputs differ in shape: dense {ref.shape} vs candidate {cand.shape}")
    out: dict[str, Any] = {"n": int(len(ref))}
    cos = cosine_rows(ref, cand)
    out["cosine_mean"] = float(cos.mean())
    out["cosine_min"] = float(cos.min())
    if task == "classifier":
        out["top1_agreement"] = topk_agreement(ref, cand, 1)
        out["top5_agreement"] = topk_agreement(ref, cand, 5)
        if y is not None:
            out["accuracy"] = float(np.mean(_rows(cand).argmax(axis=1) == np.asarray(y)))
    elif task == "encoder":
        out["nn_agreement"] = float(np.mean(nearest_neighbours(ref) == nearest_neighbours(cand)))
    else:
        a, b = _rows(ref), _rows(cand)
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        corr = (a * b).sum(axis=1) / np.where(den > 0, den, 1.0)
        out["correlation_mean"] = float(corr.mean())
        out["correlation_min"] = float(corr.min())
    return out


def task_of(loaded: Any, output: np.ndarray) -> str:
    """classifier | encoder | dense, from what the model source says or the output's shape."""
    task = getattr(loaded, "metadata", {}).get("task")
    if task in TASKS:
        return task
    if getattr(loaded, "num_classes", None) and output.ndim == 2:
        return "classifier"
    return "dense"
