"""Weighted k-means on scalars: an exact dynamic programme and Lloyd's algorithm, in numpy.

Why a 1-D solver: a palette clusters the *scalar* values of one weight tensor, and in one
dimension the optimal k-means clusters are contiguous runs of the sorted values. The minimum
squared error of putting the first ``i`` points into ``j`` clusters obeys

    D[j][i] = min_{t < i} D[j-1][t] + cost(t, i)

where ``cost`` is the weighted squared error of one run, computed in O(1) from prefix sums.
That cost satisfies the quadrangle inequality, so the best split ``t`` moves monotonically with
``i`` (and never moves left from one layer to the next), and each DP layer can be solved by
divide and conquer in O(m log m). The divide and conquer here runs *breadth first*: every
segment of one recursion level, of every batch row, is evaluated in one vectorised numpy pass,
so the Python overhead is O(k log m) calls, not O(k m).

Inputs with more than ``max_points`` distinct values are first binned into a fine uniform
histogram (up to 2**16 bins, about one per value for small inputs): the DP runs exactly on at
most ``max_points`` weighted points merged from it, Lloyd's iteration then polishes the
centroids on the fine histogram (cheap, through prefix sums) and finally on the real values
(only the values in bins next to a cluster boundary are looked at one by one). Measured on
gaussian, laplacian, bimodal, Student-t and Cauchy samples the result is within 0.03% of the
exact optimum, and it is exact whenever the input has at most ``max_points`` distinct values.

Per-value weights (``weights=``) are supported everywhere: a later issue weights each value by
its sensitivity (coremltools' "sensitive k-means").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: at most this many weighted points enter the exact DP (more distinct values are binned)
DEFAULT_MAX_POINTS = 2048
#: bins of the fine histogram used for large inputs
FINE_BINS = 1 << 16
#: ...but never many more bins than values (small channel groups)
MIN_FINE_BINS = 1 << 12
#: Lloyd steps on the real values after the histogram polish (each lowers the SSE a little)
REAL_PASSES = 6
#: rows x layers x points of split indices kept for backtracking in one batch
_OPT_BUDGET = 1 << 24

INITS = ("kmeans++", "linear", "density", "quantile")
ALGORITHMS = ("optimal", "lloyd")


@dataclass
class KMeans1DResult:
    """Centroids (ascending, only the non-empty ones), a label per value, the weighted SSE."""

    centroids: np.ndarray  # float64 (k_eff,), k_eff <= k
    labels: np.ndarray  # int64 (n,), index into centroids; always the nearest centroid
    sse: float  # sum_i w_i (x_i - centroids[labels_i])**2


# --------------------------------------------------------------------------------------------
# public entry points


def kmeans_1d(
    values: np.ndarray,
    k: int,
    *,
    weights: np.ndarray | None = None,
    algorithm: str = "optimal",
    init: str = "kmeans++",
    seed: int = 0,
    max_points: int = DEFAULT_MAX_POINTS,
    max_iter: int = 300,
) -> KMeans1DResult:
    """Cluster the scalars ``values`` (any shape, flattened) into at most ``k`` centroids."""
    return kmeans_1d_many(
        [values], k, weights=None if weights is None else [weights], algorithm=algorithm, init=init,
        seed=seed, max_points=max_points, max_iter=max_iter,
    )[0]


def kmeans_1d_many(
    rows: Sequence[np.ndarray],
    k: int,
    *,
    weights: Sequence[np.ndarray | None] | None = None,
    algorithm: str = "optimal",
    init: str = "kmeans++",
    seed: int = 0,
    max_points: int = DEFAULT_MAX_POINTS,
    max_iter: int = 300,
) -> list[KMeans1DResult]:
    """Cluster several independent value sets (e.g. the channel groups of one tensor) at once.

    With ``algorithm="optimal"`` the DP layers of all rows are solved in the same vectorised
    passes, which is what makes per-group palettes affordable.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    weights = list(weights) if weights is not None else [None] * len(rows)
    if len(weights) != len(rows):
        raise ValueError("weights must give one entry (array or None) per row")
    preps = [_Prepared.build(np.asarray(r), w, max_points) for r, w in zip(rows, weights, strict=True)]
    if algorithm == "optimal":
        starts = _optimal_centroids([p.px for p in preps], [p.pw for p in preps], k)
    else:
        rng = np.random.default_rng(seed)
        starts = [_init_centroids(p.px, p.pw, k, init, rng) for p in preps]
    out = []
    for prep, cent in zip(preps, starts, strict=True):
        out.append(prep.finish(cent, polish=(algorithm == "lloyd" or prep.binned), max_iter=max_iter))
    return out


# --------------------------------------------------------------------------------------------
# input preparation: exact distinct values, or a histogram


@dataclass
class _Prepared:
    x: np.ndarray  # float64 values, flat
    w: np.ndarray | None  # float64 weights (None = all ones)
    px: np.ndarray  # DP points, ascending
    pw: np.ndarray  # their weights (> 0)
    binned: bool
    # only when binned: fine histogram for the polish
    lo: float = 0.0
    width: float = 1.0
    fine_bin: np.ndarray | None = None  # int per value
    fx: np.ndarray | None = None  # fine bin means (non-empty bins), ascending
    fw: np.ndarray | None = None
    bin_w: np.ndarray | None = None  # weight and weighted sum of every fine bin (empty ones too)
    bin_s: np.ndarray | None = None
    inverse: np.ndarray | None = None  # exact path: value -> index into ux
    ux: np.ndarray | None = None  # exact path: the distinct values

    @classmethod
    def build(cls, values: np.ndarray, weights: np.ndarray | None, max_points: int) -> _Prepared:
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            raise ValueError("cannot cluster an empty set of values")
        if not np.all(np.isfinite(x)):
            raise ValueError("values contain NaN or infinity")
        w = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64).ravel()
            if w.shape != x.shape:
                raise ValueError(f"weights shape {w.shape} does not match values {x.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("weights must be finite and >= 0")
            if not np.any(w > 0):
                w = None  # no information: every value counts the same
        lo, hi = float(x.min()), float(x.max())
        if x.size <= 4 * max_points or lo == hi:
            uniq, inverse = np.unique(x, return_inverse=True)
            if uniq.size <= max_points:
                cnt = np.bincount(inverse, weights=w, minlength=uniq.size).astype(np.float64)
                keep = cnt > 0
                return cls(x=x, w=w, px=uniq[keep], pw=cnt[keep], binned=False, inverse=inverse, ux=uniq)
        nbins = int(min(FINE_BINS, max(MIN_FINE_BINS, 1 << (x.size - 1).bit_length())))
        width = (hi - lo) / nbins
        fine_bin = np.minimum(((x - lo) * (1.0 / width)).astype(np.int64), nbins - 1)
        cnt = np.bincount(fine_bin, weights=w, minlength=nbins)
        sums = np.bincount(fine_bin, weights=x if w is None else w * x, minlength=nbins)
        nz = cnt > 0
        fx, fw = sums[nz] / cnt[nz], cnt[nz]
        # coarse points for the DP: a new point starts at every boundary of two partitions of
        # the non-empty fine bins -- equally many bins per point (resolution where the values
        # are) and equal width (outliers far from the bulk are never merged with each other)
        nnz = fx.size
        half = max(1, max_points // 2)
        by_count = np.arange(nnz, dtype=np.int64) * half // nnz
        by_width = np.flatnonzero(nz) * half // nbins
        starts = np.ones(nnz, dtype=bool)
        starts[1:] = (np.diff(by_count) != 0) | (np.diff(by_width) != 0)
        coarse = np.cumsum(starts) - 1
        ccnt = np.bincount(coarse, weights=fw)
        csum = np.bincount(coarse, weights=fw * fx)
        cnz = ccnt > 0
        return cls(
            x=x, w=w, px=csum[cnz] / ccnt[cnz], pw=ccnt[cnz], binned=True, lo=lo, width=width,
            fine_bin=fine_bin, fx=fx, fw=fw, bin_w=cnt, bin_s=sums,
        )

    # ---------------------------------------------------------------------------------------

    def finish(self, centroids: np.ndarray, *, polish: bool, max_iter: int) -> KMeans1DResult:
        """Polish (Lloyd) where needed, then label every value with its nearest centroid."""
        c = np.unique(np.asarray(centroids, dtype=np.float64))
        if polish:
            if self.binned:
                c = _lloyd_points(self.fx, self.fw, c, max_iter)
            else:
                c = _lloyd_points(self.px, self.pw, c, max_iter)
        if not self.binned:
            labels = _nearest(self.ux, c)[self.inverse]
        else:
            # Lloyd on the real values: each step (nearest, then means) can only lower the SSE
            for _ in range(max(0, min(max_iter, REAL_PASSES))):
                new_c = self._exact_means(c)
                if np.array_equal(new_c, c):
                    break
                c = new_c
            labels = self._labels_binned(c)
        # drop centroids that no value uses, keep labels consistent
        used = np.bincount(labels, minlength=c.size) > 0
        if not np.all(used):
            remap = np.cumsum(used) - 1
            c, labels = c[used], remap[labels]
        diff = self.x - c[labels]
        diff *= diff  # sums, not np.dot: BLAS threads crawl on a busy machine
        sse = float((diff * self.w).sum()) if self.w is not None else float(diff.sum())
        return KMeans1DResult(centroids=c, labels=labels, sse=sse)

    def _exact_means(self, c: np.ndarray) -> np.ndarray:
        """Means of the clusters that nearest-centroid assignment of the *real* values makes.

        Fine bins at least one bin away from every boundary (midpoint) lie wholly in one cluster
        and contribute their histogram sums; only the values of the few bins around a boundary
        are looked at one by one.
        """
        if c.size == 1:
            total_w = self.bin_w.sum()
            return np.array([self.bin_s.sum() / total_w]) if total_w > 0 else c
        mids = (c[1:] + c[:-1]) * 0.5
        nbins = self.bin_w.size
        mb = np.clip(np.floor((mids - self.lo) / self.width).astype(np.int64), 0, nbins - 1)
        near = np.zeros(nbins, dtype=bool)
        near[mb] = True
        near[np.maximum(mb - 1, 0)] = True
        near[np.minimum(mb + 1, nbins - 1)] = True
        centres = self.lo + (np.arange(nbins) + 0.5) * self.width
        far = ~near
        lab_far = np.searchsorted(mids, centres[far], side="left")
        W = np.bincount(lab_far, weights=self.bin_w[far], minlength=c.size)
        S = np.bincount(lab_far, weights=self.bin_s[far], minlength=c.size)
        sel = np.flatnonzero(near[self.fine_bin])
        xv = self.x[sel]
        lv = np.searchsorted(mids, xv, side="left")
        wv = None if self.w is None else self.w[sel]
        W += np.bincount(lv, weights=wv, minlength=c.size)
        S += np.bincount(lv, weights=xv if wv is None else wv * xv, minlength=c.size)
        return np.where(W > 0, S / np.where(W > 0, W, 1.0), c)

    def _labels_binned(self, c: np.ndarray) -> np.ndarray:
        """Nearest centroid for every value, via a per-fine-bin lookup table (no per-value search)."""
        if c.size == 1:
            return np.zeros(self.x.size, dtype=np.int64)
        mids = (c[1:] + c[:-1]) * 0.5
        edges = self.lo + self.width * np.arange(self.bin_w.size + 1)
        base = np.searchsorted(mids, edges[:-1], side="left")  # mids strictly below the bin start
        per_bin = np.searchsorted(mids, edges[1:], side="left") - base
        if per_bin.max() > 1:  # several boundaries inside one bin: search per value instead
            return np.searchsorted(mids, self.x, side="left").astype(np.int64)
        b = base[self.fine_bin]
        mids_ext = np.append(mids, np.inf)
        return b + (self.x > mids_ext[b])


def _nearest(points: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (ties go to the lower one) for ascending centroids ``c``."""
    if c.size == 1:
        return np.zeros(points.size, dtype=np.int64)
    mids = (c[1:] + c[:-1]) * 0.5
    return np.searchsorted(mids, points, side="left").astype(np.int64)


def _lloyd_points(px: np.ndarray, pw: np.ndarray, c: np.ndarray, max_iter: int) -> np.ndarray:
    """Lloyd's iteration on ascending weighted points, O(k log m) per step via prefix sums."""
    pW = np.concatenate(([0.0], np.cumsum(pw)))
    pS = np.concatenate(([0.0], np.cumsum(pw * px)))
    cuts = None
    for _ in range(max_iter):
        mids = (c[1:] + c[:-1]) * 0.5
        new_cuts = np.searchsorted(px, mids, side="right")  # points <= mid join the lower centroid
        if cuts is not None and np.array_equal(new_cuts, cuts):
            break
        cuts = new_cuts
        b = np.concatenate(([0], cuts, [px.size]))
        wc = pW[b[1:]] - pW[b[:-1]]
        sc = pS[b[1:]] - pS[b[:-1]]
        c = np.where(wc > 0, sc / np.where(wc > 0, wc, 1.0), c)
    return c


# --------------------------------------------------------------------------------------------
# the exact DP, batched over rows


def _optimal_centroids(pxs: list[np.ndarray], pws: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Exact optimal centroids of each row of weighted ascending points."""
    out: list[np.ndarray | None] = [None] * len(pxs)
    todo = []
    for i, px in enumerate(pxs):
        if px.size <= k:
            out[i] = px.copy()
        else:
            todo.append(i)
    # group rows of similar size into batches that fit the backtracking budget
    todo.sort(key=lambda i: pxs[i].size)
    start = 0
    while start < len(todo):
        m = pxs[todo[start]].size
        end = start + 1
        while end < len(todo):
            m_next = pxs[todo[end]].size
            if m_next > 1.25 * m + 64 or (end - start + 1) * k * (m_next + 1) > _OPT_BUDGET:
                break
            end += 1
        batch = todo[start:end]
        cents = _dp_batch([pxs[i] for i in batch], [pws[i] for i in batch], k)
        for i, c in zip(batch, cents, strict=True):
            out[i] = c
        start = end
    return out  # type: ignore[return-value]


def _dp_batch(pxs: list[np.ndarray], pws: list[np.ndarray], k: int) -> list[np.ndarray]:
    R = len(pxs)
    m = max(p.size for p in pxs)
    M1 = m + 1
    X = np.empty((R, m))
    Wt = np.zeros((R, m))
    for r, (px, pw) in enumerate(zip(pxs, pws, strict=True)):
        X[r, : px.size] = px
        X[r, px.size :] = px[-1]  # zero-weight padding: costs nothing wherever it goes
        Wt[r, : px.size] = pw
    # centre and scale each row so the prefix sums keep their precision
    mean = (X * Wt).sum(1, keepdims=True) / Wt.sum(1, keepdims=True)
    spread = np.abs(X - mean).max(1, keepdims=True)
    spread[spread == 0] = 1.0
    Xc = (X - mean) / spread
    zero = np.zeros((R, 1))
    PW = np.concatenate((zero, np.cumsum(Wt, 1)), 1).ravel()
    PS = np.concatenate((zero, np.cumsum(Wt * Xc, 1)), 1).ravel()
    PQ = np.concatenate((zero, np.cumsum(Wt * Xc * Xc, 1)), 1).ravel()
    row_base = np.arange(R, dtype=np.int64) * M1
    # one row per flat position: [D_prev, W, S, Q] -- one gather fetches all four
    table = np.empty((R * M1, 4))
    table[:, 1], table[:, 2], table[:, 3] = PW, PS, PQ
    # layer 1: one cluster holding the first i points
    w0 = PW - np.repeat(PW[row_base], M1)
    s0 = PS - np.repeat(PS[row_base], M1)
    q0 = PQ - np.repeat(PQ[row_base], M1)
    table[:, 0] = np.maximum(q0 - s0 * s0 / np.where(w0 > 0, w0, 1.0), 0.0)
    # Every layer solves i = 1..m with t in [0, i-1] (earlier clusters may be empty: that never
    # beats using all of them, and it makes the divide-and-conquer tree the same for all layers).
    levels = _dc_levels(m, row_base)
    sentinel = R * M1  # opt slot holding m: "no upper bound"
    opt_dtype = np.int16 if M1 < 32767 else np.int32
    opts = np.zeros((k + 1, R * M1 + 1), dtype=opt_dtype)
    opts[:, sentinel] = m
    pos_bits = max(16, int(m).bit_length())
    last = (row_base + m, row_base, np.full(R, sentinel), np.full(R, m))
    for j in range(2, k + 1):
        table[:, 0] = _dp_layer(table, levels if j < k else [last], opts[j], opts[j - 1], row_base, pos_bits)
    # backtrack the cluster boundaries
    bounds = np.empty((R, k + 1), dtype=np.int64)
    bounds[:, k] = m
    cur = np.full(R, m, dtype=np.int64)
    for j in range(k, 1, -1):
        cur = opts[j][row_base + cur].astype(np.int64)
        bounds[:, j - 1] = cur
    bounds[:, 0] = 0
    out = []
    for r in range(R):
        b = bounds[r]
        w = PW[row_base[r] + b[1:]] - PW[row_base[r] + b[:-1]]
        s = PS[row_base[r] + b[1:]] - PS[row_base[r] + b[:-1]]
        nz = w > 0
        cent = (s[nz] / w[nz]) * spread[r, 0] + mean[r, 0]
        out.append(np.sort(cent))
    return out


def _dc_levels(m: int, row_base: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """The divide-and-conquer tree over i = 1..m, level by level, as flat indices for all rows.

    Per level: (flat i of each node, flat i whose split is the node's lower bound, flat i whose
    split is its upper bound or the sentinel, local i). The tree depends on m only.
    """
    out = []
    lo, hi = np.array([1]), np.array([m])
    lb, rb = np.array([0]), np.array([-1])
    sentinel = row_base.size * (m + 1)
    while lo.size:
        mid = (lo + hi) >> 1
        rb_flat = np.where(rb[None, :] < 0, sentinel, row_base[:, None] + rb[None, :]).ravel()
        out.append((
            (row_base[:, None] + mid[None, :]).ravel(),
            (row_base[:, None] + lb[None, :]).ravel(),
            rb_flat,
            np.tile(mid, row_base.size),
        ))
        left, right = lo < mid, mid < hi
        lo, hi, lb, rb = (
            np.concatenate((lo[left], mid[right] + 1)),
            np.concatenate((mid[left] - 1, hi[right])),
            np.concatenate((lb[left], mid[right])),
            np.concatenate((mid[left], rb[right])),
        )
    return out


def _dp_layer(
    table: np.ndarray,
    levels: list[tuple[np.ndarray, ...]],
    opt: np.ndarray,
    opt_prev: np.ndarray,
    row_base: np.ndarray,
    pos_bits: int,
) -> np.ndarray:
    """One DP layer for every row: breadth-first divide and conquer over monotone split points.

    ``table[:, 0]`` holds the previous layer; returns the new one. The best split of node i lies
    between the best splits of its solved neighbours to the left and right in the tree, and is
    never left of the previous layer's best split at i (Knuth's bound for Monge costs).

    The argmin is read off one ``minimum.reduceat`` over int64 keys: a cost's IEEE bits
    (non-negative floats order like their bit patterns) with the low ``pos_bits`` bits replaced
    by the candidate's position in its segment. Costs closer than ~2**(pos_bits-52) relative
    count as ties, broken toward the smaller split.
    """
    D = np.full(table.shape[0], np.inf)
    D[row_base] = 0.0  # no points: no error, however many (empty) clusters
    low = np.int64((1 << pos_bits) - 1)
    for i_flat, lb_flat, rb_flat, mid in levels:
        rows = i_flat - mid  # flat offset of each node's row
        tlo = np.maximum(opt[lb_flat], opt_prev[i_flat]).astype(np.int64)
        L = np.minimum(opt[rb_flat].astype(np.int64), mid - 1) - tlo + 1
        ends = np.cumsum(L)
        starts = ends - L
        pos = np.arange(int(ends[-1]), dtype=np.int64)
        pos -= np.repeat(starts, L)
        t_flat = pos + np.repeat(rows + tlo, L)
        at_t = table[t_flat]
        at_i = np.repeat(table[i_flat, 1:], L, axis=0)
        w = at_i[:, 0] - at_t[:, 1]
        w += 1e-300  # a run of zero-weight padding has s == 0: cost 0, not 0/0
        s = at_i[:, 1] - at_t[:, 2]
        val = at_i[:, 2] - at_t[:, 3]
        val -= s * s / w
        np.maximum(val, 0.0, out=val)
        val += at_t[:, 0]  # >= +0.0, never -0.0
        key = val.view(np.int64) & ~low
        key |= pos
        best_pos = np.minimum.reduceat(key, starts) & low
        D[i_flat] = val[starts + best_pos]
        opt[i_flat] = tlo + best_pos
    return D


# --------------------------------------------------------------------------------------------
# Lloyd initialisations


def _init_centroids(px: np.ndarray, pw: np.ndarray, k: int, init: str, rng: np.random.Generator) -> np.ndarray:
    """Starting centroids for Lloyd on weighted ascending points ``px``.

    ``linear``: evenly spaced over the value range (TFMOT's linear init). ``quantile``: the
    weighted (i + 0.5)/k quantiles. ``density``: quantiles of the density p(x)**(1/3), the point
    density of an asymptotically optimal quantiser (Panter-Dite), estimated on the histogram.
    ``kmeans++``: greedy D^2 sampling as in scikit-learn (2 + ln k trials per centroid).
    """
    if px.size <= k:
        return px.copy()
    if init == "linear":
        return np.linspace(px[0], px[-1], k)
    if init in ("quantile", "density"):
        mass = pw if init == "quantile" else _cube_root_density(px, pw)
        cdf = np.cumsum(mass, dtype=np.float64)
        cdf /= cdf[-1]
        targets = (np.arange(k) + 0.5) / k
        idx = np.minimum(np.searchsorted(cdf, targets), px.size - 1)
        return np.unique(px[idx])
    return _kmeans_pp(px, pw, k, rng)


def _cube_root_density(px: np.ndarray, pw: np.ndarray) -> np.ndarray:
    """Per-point mass proportional to p(x)**(1/3), p estimated over ~sqrt(m) equal-width bins."""
    nb = max(8, int(math.sqrt(px.size)))
    lo, hi = px[0], px[-1]
    b = np.minimum(((px - lo) / (hi - lo) * nb).astype(np.int64), nb - 1)
    dens = np.bincount(b, weights=pw, minlength=nb)
    per_point_share = pw / dens[b]  # each point's share of its bin
    return per_point_share * np.cbrt(dens)[b]


def _kmeans_pp(px: np.ndarray, pw: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    trials = 2 + int(math.log(k))
    p = pw / pw.sum()
    centers = [px[rng.choice(px.size, p=p)]]
    d2 = (px - centers[0]) ** 2
    for _ in range(1, k):
        pot = float((pw * d2).sum())
        if pot <= 0:
            break
        cand = np.searchsorted(np.cumsum(pw * d2), rng.random(trials) * pot)
        cand = np.minimum(cand, px.size - 1)
        cand_d2 = np.minimum(d2[None, :], (px[None, :] - px[cand][:, None]) ** 2)
        best = int(np.argmin((cand_d2 * pw).sum(axis=1)))
        centers.append(px[cand[best]])
        d2 = cand_d2[best]
    return np.unique(np.asarray(centers))
