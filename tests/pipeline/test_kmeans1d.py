"""Invariants of the 1-D k-means solvers: exactness against brute force, never worse than Lloyd
or scikit-learn, nearest-centroid labels, weights that act like repeated values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.palettize.kmeans1d import INITS, kmeans_1d, kmeans_1d_many


def brute_force_sse(x: np.ndarray, w: np.ndarray, k: int) -> float:
    """Minimum weighted SSE over every partition of the sorted distinct values into contiguous runs."""
    ux = np.unique(x)
    uw = np.array([w[x == u].sum() for u in ux])
    m = ux.size
    best = np.inf
    for c in range(1, min(k, m) + 1):
        for cuts in itertools.combinations(range(1, m), c - 1):
            b = (0, *cuts, m)
            err = 0.0
            for a, e in zip(b[:-1], b[1:], strict=True):
                xx, ww = ux[a:e], uw[a:e]
                mu = (xx * ww).sum() / ww.sum()
                err += (ww * (xx - mu) ** 2).sum()
            best = min(best, err)
    return best


def distributions(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "gaussian": rng.standard_normal(n),
        "laplacian": rng.laplace(size=n),
        "bimodal": np.concatenate([rng.normal(-3, 0.3, n // 2), rng.normal(2, 1, n - n // 2)]),
        "student_t3": rng.standard_t(3, n),  # heavy tails: outliers must not be merged
    }


@pytest.mark.parametrize("seed", range(12))
def test_exact_solver_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 13))
    k = int(rng.integers(1, 6))
    x = np.round(rng.standard_normal(n), 1)  # rounding to 0.1 makes duplicates
    w = rng.random(n) + 0.05 if seed % 2 else np.ones(n)
    res = kmeans_1d(x, k, weights=w)
    expected = brute_force_sse(x, w, k)
    assert res.sse == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert res.centroids.size <= k
    assert np.all(np.diff(res.centroids) > 0)


def test_integer_weights_equal_repeated_values() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300)
    reps = rng.integers(1, 5, size=300)
    weighted = kmeans_1d(x, 8, weights=reps.astype(float))
    repeated = kmeans_1d(np.repeat(x, reps), 8)
    assert weighted.sse == pytest.approx(repeated.sse, rel=1e-9)
    np.testing.assert_allclose(weighted.centroids, repeated.centroids, rtol=1e-9)


def test_weights_pull_centroids_toward_heavy_values() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal(5000)
    w = np.where(np.abs(x) > 2, 100.0, 1.0)  # the tails matter a hundred times more
    plain = kmeans_1d(x, 8)
    weighted = kmeans_1d(x, 8, weights=w)
    tail = np.abs(x) > 2
    def tail_err(r):
        return float(((x - r.centroids[r.labels])[tail] ** 2).sum())
    assert tail_err(weighted) < tail_err(plain)
    # and it is optimal for the objective it was given
    assert weighted.sse <= float((w * (x - plain.centroids[plain.labels]) ** 2).sum())


def test_zero_weight_values_still_get_their_nearest_centroid() -> None:
    x = np.array([0.0, 0.1, 5.0, 5.1, 9.9, 10.0])
    w = np.array([1, 1, 1, 1, 0, 0], dtype=float)
    res = kmeans_1d(x, 2, weights=w)
    assert res.centroids.tolist() == pytest.approx([0.05, 5.05])
    assert res.labels.tolist() == [0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("n", [1500, 40_000])  # exact path, then the histogram path
def test_labels_are_nearest_centroids(n: int) -> None:
    x = np.random.default_rng(5).laplace(size=n)
    res = kmeans_1d(x, 64)
    dist = np.abs(x[:, None] - res.centroids[None, :])
    chosen = dist[np.arange(n), res.labels]
    assert np.all(chosen <= dist.min(axis=1) + 1e-12)
    assert res.sse == pytest.approx(float(((x - res.centroids[res.labels]) ** 2).sum()), rel=1e-12)


def test_batched_rows_equal_single_runs() -> None:
    rng = np.random.default_rng(6)
    rows = [rng.standard_normal(int(rng.integers(20, 2500))) for _ in range(9)]
    rows.append(np.full(50, 0.25))  # a constant row
    rows.append(np.array([1.0, 2.0, 3.0]))  # fewer values than clusters
    many = kmeans_1d_many(rows, 16)
    for row, got in zip(rows, many, strict=True):
        single = kmeans_1d(row, 16)
        assert got.sse == pytest.approx(single.sse, rel=1e-9, abs=1e-12)
        assert got.centroids.size <= min(16, np.unique(row).size)


@pytest.mark.parametrize("name", ["gaussian", "laplacian", "bimodal", "student_t3"])
def test_exact_path_never_worse_than_lloyd(name: str) -> None:
    x = distributions(1800, seed=7)[name]  # 1800 distinct values: the DP runs on all of them
    best = kmeans_1d(x, 32)
    for init in INITS:
        lloyd = kmeans_1d(x, 32, algorithm="lloyd", init=init, seed=1)
        assert best.sse <= lloyd.sse * (1 + 1e-12), init


@pytest.mark.parametrize("name", ["gaussian", "laplacian", "bimodal", "student_t3"])
def test_histogram_path_beats_lloyd_and_sklearn(name: str) -> None:
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    x = distributions(30_000, seed=8)[name]  # more than the DP's points: binned, then polished
    ours = kmeans_1d(x, 64)
    for init in INITS:
        assert ours.sse <= kmeans_1d(x, 64, algorithm="lloyd", init=init).sse, init
    sk = sklearn_cluster.KMeans(n_clusters=64, n_init=1, random_state=0).fit(x.reshape(-1, 1))
    assert ours.sse <= sk.inertia_ * (1 + 1e-9)
    # and close to the exact optimum computed on every distinct value (slow path, small k)
    exact = kmeans_1d(x[:6000], 8, max_points=6000)
    assert kmeans_1d(x[:6000], 8, max_points=512).sse <= exact.sse * 1.001


def test_lloyd_inits_are_seeded_and_bounded() -> None:
    x = np.random.default_rng(9).standard_normal(4000)
    for init in INITS:
        a = kmeans_1d(x, 16, algorithm="lloyd", init=init, seed=3)
        b = kmeans_1d(x, 16, algorithm="lloyd", init=init, seed=3)
        np.testing.assert_array_equal(a.centroids, b.centroids)
        assert 1 <= a.centroids.size <= 16


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        (np.array([]), {}, "empty"),
        (np.array([1.0, np.nan]), {}, "NaN"),
        (np.ones(3), {"weights": np.array([1.0, -1.0, 1.0])}, ">= 0"),
        (np.ones(3), {"weights": np.ones(2)}, "shape"),
        (np.ones(3), {"algorithm": "fast"}, "algorithm"),
    ],
)
def test_bad_input_is_refused(values, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        kmeans_1d(values, 4, **kwargs)
