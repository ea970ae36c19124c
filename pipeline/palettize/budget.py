"""Per-layer cluster budgets: more clusters where the output is sensitive, fewer elsewhere.

Why: one cluster count for every tensor spends bits evenly, but layers differ a lot in how much
their quantization error hurts the output (a classifier head, a depthwise convolution and a
1x1 expansion are not alike). Given a target average of bits per weight *including the codebooks*
(``ceil(log2 k)`` index bits per value, plus 32 bits per codebook entry; with ``int8_grid`` 8 bits
per entry and a 32-bit scale per output channel: exactly what
`pipeline.palettize.apply.bits_per_weight` counts), choose for every layer a cluster count and a
codebook granularity (per tensor, or one codebook per group of output channels) that minimise the
summed, sensitivity-weighted quantization error while the total stays at or under the target.

How: for each layer and each candidate (k, group size) the weighted k-means error is estimated
with a fast batched Lloyd iteration on sorted values and prefix sums (O(k log n) per step once the
values are sorted), then a multiple-choice knapsack is solved greedily on each layer's lower
convex hull of (bits, error), best error drop per bit first, and finally any leftover bits are
spent on the single upgrade that helps most until none fits. The result turns into
`PalettizeConfig` overrides, so the palettizer itself (and its export) needs nothing new.

Errors are summed across layers as they are for ``fisher`` and ``output`` sensitivities (estimates
of the loss or output change, comparable across layers). For ``activation`` or no sensitivity
they are first divided by the layer's weighted signal ``sum(s * w**2)`` (relative noise at that
layer's output), since those numbers are not comparable across layers otherwise.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipeline.errors import ConfigError

DEFAULT_CLUSTERS = (4, 8, 16, 32, 64, 128, 256)
DEFAULT_GROUP_SIZES: tuple[int | None, ...] = (None, 32, 8)
CODEBOOK_ENTRY_BITS = 32
INT8_ENTRY_BITS = 8
SCALE_BITS = 32
LLOYD_STEPS = 25


@dataclasses.dataclass(frozen=True, order=True)
class Option:
    """One way to palettize a layer: ``clusters`` centroids per codebook, one codebook per
    ``group_size`` output channels (``None``: one codebook for the whole tensor)."""

    clusters: int
    group_size: int | None = None

    def n_groups(self, shape: tuple[int, ...]) -> int:
        return 1 if self.group_size is None else math.ceil(shape[0] / self.group_size)

    def bits(self, shape: tuple[int, ...], int8_grid: bool = False) -> int:
        """Packed bits of the whole tensor: indices plus codebooks (and int8 scales)."""
        n = int(np.prod(shape))
        index_bits = max(1, math.ceil(math.log2(self.clusters)))
        if int8_grid:
            side = INT8_ENTRY_BITS * self.n_groups(shape) * self.clusters + SCALE_BITS * shape[0]
        else:
            side = CODEBOOK_ENTRY_BITS * self.n_groups(shape) * self.clusters
        return n * index_bits + side

    def settings(self) -> dict[str, Any]:
        """The `PalettizeConfig` fields this option sets (an ``overrides`` entry)."""
        if self.group_size is None:
            return {"clusters": self.clusters, "granularity": "per_tensor", "group_size": None}
        return {"clusters": self.clusters, "granularity": "per_channel_group", "group_size": self.group_size}

    def label(self) -> str:
        return f"k={self.clusters}" + ("" if self.group_size is None else f"/g{self.group_size}")


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """What a budget may choose from, and the average it must meet (checked when built)."""

    target_bits: float = 6.0
    clusters: tuple[int, ...] = DEFAULT_CLUSTERS
    group_sizes: tuple[int | None, ...] = DEFAULT_GROUP_SIZES
    relative: bool | None = None  # None: relative unless the sensitivities are Fisher
    int8_grid: bool = False

    def __post_init__(self) -> None:
        t = self.target_bits
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"target_bits must be a positive number of bits per weight (got {t!r})",
                              next_step="Set target_bits, e.g. 6 for an average of 6 bits per weight.",
                              field="target_bits")
        ks = tuple(self.clusters)
        if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and 2 <= k <= 256 for k in ks):
            raise ConfigError(f"clusters must be integers from 2 to 256 (got {self.clusters!r})",
                              next_step="Use e.g. [4, 8, 16, 32, 64, 128, 256].", field="clusters")
        gs = tuple(self.group_sizes)
        if not gs or not all(g is None or (isinstance(g, int) and not isinstance(g, bool) and g >= 1) for g in gs):
            raise ConfigError(f"group_sizes must be null (per tensor) or positive integers (got {self.group_sizes!r})",
                              next_step="Use e.g. [null, 32, 8].", field="group_sizes")
        object.__setattr__(self, "clusters", tuple(sorted(set(ks))))
        object.__setattr__(self, "group_sizes", tuple(dict.fromkeys(gs)))

    def options(self, shape: tuple[int, ...]) -> list[Option]:
        out = []
        for g in self.group_sizes:
            if g is not None and g >= shape[0]:
                g = None  # one group spanning every channel is the per-tensor palette
            for k in self.clusters:
                out.append(Option(k, g))
        return sorted(set(out), key=lambda o: (o.bits(shape, self.int8_grid), o))


@dataclasses.dataclass
class LayerChoice:
    name: str
    shape: tuple[int, ...]
    option: Option
    bits: int
    error: float  # estimated (weighted) error of the chosen option
    errors: dict[Option, float]  # every candidate's estimate

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))


@dataclasses.dataclass
class Budget:
    """The chosen option per layer; ``bits_per_weight`` is the planned average (codebooks in)."""

    choices: dict[str, LayerChoice]
    target_bits: float
    int8_grid: bool = False

    @property
    def total_bits(self) -> int:
        return sum(c.bits for c in self.choices.values())

    @property
    def numel(self) -> int:
        return sum(c.numel for c in self.choices.values())

    @property
    def bits_per_weight(self) -> float:
        return self.total_bits / self.numel if self.numel else math.nan

    def overrides(self) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
        """`PalettizeConfig.overrides` entries, one exact-name pattern per layer."""
        return tuple((f"^{re.escape(name)}$", tuple(sorted(c.option.settings().items())))
                     for name, c in self.choices.items())

    def apply_to(self, config: Any) -> Any:
        """A copy of ``config`` (a `PalettizeConfig`) whose overrides carry this budget; its own
        overrides that leave layers dense (``None``) keep priority."""
        dense = tuple((p, s) for p, s in config.overrides if s is None)
        rest = tuple((p, s) for p, s in config.overrides if s is not None)
        return dataclasses.replace(config, overrides=dense + self.overrides() + rest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_bits": self.target_bits,
            "bits_per_weight": self.bits_per_weight,
            "layers": {n: {"clusters": c.option.clusters, "group_size": c.option.group_size, "bits": c.bits,
                           "error": c.error} for n, c in self.choices.items()},
        }

    def histogram(self) -> dict[str, int]:
        """How many layers got each option label (for reports)."""
        out: dict[str, int] = {}
        for c in self.choices.values():
            out[c.option.label()] = out.get(c.option.label(), 0) + 1
        return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------------------
# error estimates


def _grouped_sorted(w2: np.ndarray, s2: np.ndarray | None, group_size: int | None):
    """Rows = codebook groups, values sorted within each row, padded with zero-weight copies."""
    out_ch, m = w2.shape
    g = out_ch if group_size is None else min(group_size, out_ch)
    n_groups = math.ceil(out_ch / g)
    pad = n_groups * g - out_ch
    s2 = np.ones_like(w2) if s2 is None else s2
    if pad:
        w2 = np.concatenate([w2, np.repeat(w2[-1:], pad, axis=0)])
        s2 = np.concatenate([s2, np.zeros((pad, m), dtype=s2.dtype)])
    v = w2.reshape(n_groups, g * m)
    s = s2.reshape(n_groups, g * m)
    order = np.argsort(v, axis=1, kind="stable")
    return np.take_along_axis(v, order, axis=1), np.take_along_axis(s, order, axis=1)


INIT_BINS = 512
DP_START_ROWS = 4
DP_SAMPLE = 16384


def weighted_kmeans_error(values: np.ndarray, weights: np.ndarray | None, k: int, group_size: int | None,
                          steps: int = LLOYD_STEPS) -> float:
    """Estimated weighted k-means error ``sum s * (w - c(w))**2`` of clustering ``values`` (axis 0 =
    output channels) with ``k`` centroids per group of ``group_size`` channels."""
    return weighted_kmeans_errors(values, weights, (k,), group_size, steps)[k]


def weighted_kmeans_errors(values: np.ndarray, weights: np.ndarray | None, ks: tuple[int, ...],
                           group_size: int | None, steps: int = LLOYD_STEPS) -> dict[int, float]:
    """`weighted_kmeans_error` for several ``k`` at once (the values are sorted once).

    Start: centroids spread like the cube root of the weighted value density (the asymptotically
    optimal spacing for squared error), then Lloyd steps done on prefix sums of the sorted values,
    all groups at once. Not the exact optimum, but close, and cheap enough to try dozens of options
    per layer.
    """
    w2 = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
    s2 = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(w2.shape)
    v, s = _grouped_sorted(w2, s2, group_size)
    rows, n = v.shape
    zero = np.zeros((rows, 1))
    cw = np.concatenate([zero, np.cumsum(s, axis=1)], axis=1)
    cwv = np.concatenate([zero, np.cumsum(s * v, axis=1)], axis=1)
    cwv2 = np.concatenate([zero, np.cumsum(s * v * v, axis=1)], axis=1)
    # flatten with a per-row offset so one searchsorted serves every row
    lo, hi = float(v.min()), float(v.max())
    span = (hi - lo) * 2 + 1.0
    offs = (np.arange(rows) * span)[:, None]
    flat = (v - lo + offs).ravel()
    base = (np.arange(rows) * n)[:, None]
    # cube-root density per row on a fine histogram
    vmin, vmax = v[:, :1], v[:, -1:]
    width = np.where(vmax > vmin, vmax - vmin, 1.0)
    binned = np.minimum(((v - vmin) / width * INIT_BINS).astype(np.int64), INIT_BINS - 1)
    hist = np.zeros((rows, INIT_BINS))
    np.add.at(hist, (np.repeat(np.arange(rows), n), binned.ravel()), s.ravel())
    dens = np.cbrt(hist)
    cdf = np.cumsum(dens, axis=1)
    cdf = cdf / np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)
    wcdf = cw[:, 1:] / np.where(cw[:, -1:] > 0, cw[:, -1:], 1.0)
    out: dict[int, float] = {}
    for k in ks:
        q = (np.arange(k) + 0.5) / k
        starts = [vmin + (np.minimum(_rowwise_searchsorted(cdf, q), INIT_BINS - 1) + 0.5) / INIT_BINS * width]
        if n < 64 * k:  # few values per centroid: also start from weighted quantiles of the values
            starts.append(np.take_along_axis(v, np.minimum(_rowwise_searchsorted(wcdf, q), n - 1), axis=1))
        if rows <= DP_START_ROWS:  # few codebooks: also start from the exact DP on a subsample
            starts.append(_dp_start(v, s, k))
        out[k] = min(_lloyd(c, flat, lo, offs, base, cw, cwv, cwv2, steps) for c in starts)
    return out


def _dp_start(v: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """Centroids of the exact 1-D k-means (`kmeans_1d_many`) on an evenly strided subsample of each
    sorted row: Lloyd alone stalls in poor optima on heavy-tailed values."""
    from pipeline.palettize.kmeans1d import kmeans_1d_many

    step = max(1, v.shape[1] // DP_SAMPLE)
    res = kmeans_1d_many([r[::step] for r in v], k, weights=[r[::step] + 1e-300 for r in s], max_points=512)
    out = np.empty((v.shape[0], k))
    for i, r in enumerate(res):
        c = np.sort(r.centroids)
        out[i, : c.size] = c
        out[i, c.size:] = c[-1]
    return out


def _lloyd(c: np.ndarray, flat: np.ndarray, lo: float, offs: np.ndarray, base: np.ndarray, cw: np.ndarray,
           cwv: np.ndarray, cwv2: np.ndarray, steps: int) -> float:
    """Lloyd steps on prefix sums from centroids ``c`` (rows, k); returns the weighted SSE."""
    rows, k = c.shape
    n = cw.shape[1] - 1
    c = np.sort(c, axis=1)
    err = math.inf
    for _ in range(max(1, steps)):
        if k > 1:
            bounds = (c[:, 1:] + c[:, :-1]) * 0.5
            cut = np.searchsorted(flat, (bounds - lo + offs).ravel(), side="left").reshape(rows, k - 1) - base
            edges = np.concatenate([np.zeros((rows, 1), dtype=np.int64), cut, np.full((rows, 1), n)], axis=1)
        else:
            edges = np.concatenate([np.zeros((rows, 1), dtype=np.int64), np.full((rows, 1), n)], axis=1)
        a, b = edges[:, :-1], edges[:, 1:]
        sw = np.take_along_axis(cw, b, 1) - np.take_along_axis(cw, a, 1)
        swv = np.take_along_axis(cwv, b, 1) - np.take_along_axis(cwv, a, 1)
        swv2 = np.take_along_axis(cwv2, b, 1) - np.take_along_axis(cwv2, a, 1)
        new_err = float(np.maximum(swv2 - 2 * c * swv + c * c * sw, 0).sum())
        if new_err >= err * (1 - 1e-6):
            return min(err, new_err)
        err = new_err
        c = np.sort(np.where(sw > 0, swv / np.where(sw > 0, sw, 1.0), c), axis=1)
    return err


def _rowwise_searchsorted(cdf: np.ndarray, q: np.ndarray) -> np.ndarray:
    """searchsorted(cdf[r], q) for every row r in one call (rows offset by 2, cdf in [0, 1])."""
    rows, bins = cdf.shape
    offs = (np.arange(rows) * 2.0)[:, None]
    idx = np.searchsorted((cdf + offs).ravel(), (q[None, :] + offs).ravel()).reshape(rows, q.size)
    return idx - (np.arange(rows) * bins)[:, None]


def estimate_errors(
    weights: Mapping[str, np.ndarray],
    sensitivities: Mapping[str, np.ndarray] | None,
    config: BudgetConfig,
    *,
    relative: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[Option, float]]:
    """``{layer: {option: estimated weighted error}}`` (relative to the layer's weighted signal
    when ``relative``)."""
    out: dict[str, dict[Option, float]] = {}
    items = list(weights.items())
    for i, (name, w) in enumerate(items):
        if progress:
            progress(name, i, len(items))
        w = np.asarray(w, dtype=np.float64)
        s = None if not sensitivities or name not in sensitivities else np.asarray(sensitivities[name], np.float64)
        if config.int8_grid:  # errors on the per-channel int8 scale, as int8_grid palettes cluster
            scale = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127.0
            scale = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (w.ndim - 1))
            s = (np.ones_like(w) if s is None else s) * scale**2
            w = w / scale
        denom = 1.0
        if relative:
            denom = float(((np.ones_like(w) if s is None else s) * w * w).sum()) or 1.0
        opts = config.options(tuple(w.shape))
        errs: dict[Option, float] = {}
        for g in dict.fromkeys(o.group_size for o in opts):
            ks = tuple(sorted({o.clusters for o in opts if o.group_size == g}))
            for k, e in weighted_kmeans_errors(w, s, ks, g).items():
                errs[Option(k, g)] = e / denom
        out[name] = errs
    if progress:
        progress("", len(items), len(items))
    return out


# ------------------------------------------------------------------------------------------------
# allocation


def _hull(points: list[tuple[int, float, Option]]) -> list[tuple[int, float, Option]]:
    """Lower convex hull of (bits, error), bits ascending, error strictly falling."""
    pts = sorted(points, key=lambda p: (p[0], p[1]))
    mono: list[tuple[int, float, Option]] = []
    for p in pts:
        if mono and p[1] >= mono[-1][1]:
            continue  # costs more, no better
        mono.append(p)
    hull: list[tuple[int, float, Option]] = []
    for p in mono:
        while len(hull) >= 2:
            (b1, e1, _), (b2, e2, _) = hull[-2], hull[-1]
            # drop hull[-1] if it lies on or above the segment hull[-2] -> p
            if (e1 - e2) * (p[0] - b1) <= (e1 - p[1]) * (b2 - b1):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def allocate(
    errors: Mapping[str, Mapping[Option, float]],
    shapes: Mapping[str, tuple[int, ...]],
    target_bits: float,
    *,
    int8_grid: bool = False,
) -> dict[str, LayerChoice]:
    """Pick one option per layer minimising the summed error with total bits <= target * weights."""
    numel = sum(int(np.prod(shapes[n])) for n in errors)
    budget = math.floor(target_bits * numel + 1e-9)
    pts = {n: [(opt.bits(tuple(shapes[n]), int8_grid), float(e), opt) for opt, e in errs.items()]
           for n, errs in errors.items()}
    hulls = {n: _hull(p) for n, p in pts.items()}
    at = dict.fromkeys(hulls, 0)
    spent = sum(h[0][0] for h in hulls.values())
    if spent > budget:
        cheapest = spent / max(numel, 1)
        raise ConfigError(
            f"target of {target_bits:g} bits per weight is below the cheapest palettes on offer "
            f"({cheapest:.3f} bits per weight with codebooks)",
            next_step=f"Raise the target to at least {math.ceil(cheapest * 100) / 100:g}, or allow fewer clusters.",
            field="target_bits",
        )
    heap: list[tuple[float, str]] = []

    def push(name: str) -> None:
        h, i = hulls[name], at[name]
        if i + 1 < len(h):
            gain = (h[i][1] - h[i + 1][1]) / max(h[i + 1][0] - h[i][0], 1)
            heapq.heappush(heap, (-gain, name))

    for n in hulls:
        push(n)
    while heap:
        _, n = heapq.heappop(heap)
        h, i = hulls[n], at[n]
        extra = h[i + 1][0] - h[i][0]
        if spent + extra <= budget:
            spent += extra
            at[n] = i + 1
            push(n)
        # else: this layer's next step does not fit; smaller steps elsewhere still may
    chosen = {n: hulls[n][at[n]] for n in hulls}
    # spend what is left on the single best upgrade (any option, not just hull steps) while one fits
    while True:
        best = None
        for n, (b0, e0, _) in chosen.items():
            for b, e, opt in pts[n]:
                if e < e0 and b > b0 and spent + b - b0 <= budget:
                    gain = e0 - e
                    if best is None or gain > best[0]:
                        best = (gain, n, (b, e, opt), b - b0)
        if best is None:
            break
        _, n, p, extra = best
        chosen[n] = p
        spent += extra
    return {n: LayerChoice(name=n, shape=tuple(shapes[n]), option=p[2], bits=p[0], error=p[1],
                           errors=dict(errors[n]))
            for n, p in chosen.items()}


def plan_budget(
    weights: Mapping[str, np.ndarray],
    sensitivities: Mapping[str, np.ndarray] | None,
    config: BudgetConfig,
    *,
    comparable: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> Budget:
    """Estimate every option's error per layer and allocate clusters under ``config.target_bits``.

    ``weights``: the tensors that will be palettized (name -> array, axis 0 = output channels);
    ``sensitivities``: per-value importance of the same shapes, or None; ``comparable``: the
    sensitivities are comparable across layers (``fisher`` or ``output``), so errors are summed as
    they are rather than made relative to each layer's signal.
    """
    if not weights:
        raise ConfigError("no weights to budget", next_step="Check the palettize selection.")
    relative = (not comparable) if config.relative is None else config.relative
    errs = estimate_errors(weights, sensitivities, config, relative=relative, progress=progress)
    shapes = {n: tuple(np.shape(w)) for n, w in weights.items()}
    choices = allocate(errs, shapes, config.target_bits, int8_grid=config.int8_grid)
    return Budget(choices=choices, target_bits=float(config.target_bits), int8_grid=config.int8_grid)
