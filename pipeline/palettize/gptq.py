"""Error-compensating palette assignment (GPTQ with a codebook) and a codebook refit.

Why: nearest-centroid assignment treats every weight on its own, so the rounding errors of one
output channel add up in that channel's output. GPTQ (Frantar et al., 2022) instead assigns the
input columns of a layer one at a time and, after each, moves the not-yet-assigned columns of the
same rows so that the layer's output on calibration data changes as little as possible. The same
procedure works with any value grid, so here it rounds to the palette's centroids (what GPTVQ
does for 1-D codebooks). The codebook is then refit: with the assignments fixed, the layer's
output error is a quadratic in the centroid values, solved by preconditioned conjugate gradients.

The quantity minimised, for a weight ``W`` (rows = output channels, columns = the inputs a row
multiplies) and the calibration inputs ``X`` of that layer, is ``tr((W - Q) H (W - Q)^T)`` with
``H = X^T X / n``: the mean squared change of the layer's output. `collect_hessians` gathers ``H``
for Linear layers (last axis of the input) and Conv1d/Conv2d layers (the unfolded input patches;
one ``H`` per convolution group, so a depthwise 5x5 convolution has one 25x25 ``H`` per channel).

With fewer calibration samples than columns (a classifier after global pooling sees one input
per image: EfficientNet-Lite0's 1,280-wide classifier, 176 calibration views) ``H`` is singular,
and GPTQ's error feedback overfits the batch; such statistics are shrunk toward their mean
diagonal with a Ledoit-Wolf intensity estimated from the samples (`LayerHessian.shrinkage`).

Everything runs in float64 torch on the CPU. The column loop is Python, so the cost grows with
the total number of input columns (EfficientNet-Lite0: seconds; a ViT-B: about a minute).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

#: GPTQ's damping: this fraction of the mean of diag(H) is added to its diagonal
DAMP = 0.01
#: columns assigned per lazy-update block
BLOCK = 128
#: conjugate-gradient steps of one codebook refit
CG_STEPS = 30
#: calibration passes of sequential GPTQ: layers are palettized in forward order, and each pass
#: gathers the statistics of the next share of them from the partly palettized model
SEQUENTIAL_PASSES = 4


@dataclass
class LayerHessian:
    """``h``: float64 (groups, d, d), the mean of ``x x^T`` over the calibration inputs ``x`` of
    each convolution group (one group for Linear layers); ``samples``: how many inputs."""

    h: np.ndarray
    samples: int
    fourth: np.ndarray | None = None  # (groups,) mean of ||x||**4, for `shrunk` (None: not gathered)

    def shrinkage(self) -> np.ndarray:
        """Ledoit-Wolf shrinkage intensity per group (0: trust ``h``; 1: only its mean diagonal).

        ``h`` is a sample estimate; with fewer samples than columns (a classifier after global
        pooling sees one input per calibration image) it is singular, and GPTQ would push rounding
        error into the directions the calibration batch never spans, which fresh inputs do reach.
        The intensity is estimated from the samples themselves (the variance of the estimate over
        its distance from the scaled identity). Only such singular statistics are shrunk: with at
        least as many samples as columns the intensity is 0, and GPTQ works as before."""
        g, d = self.groups, self.columns
        if self.fourth is None or self.samples < 2 or self.samples >= d:
            return np.zeros(g)
        mu = self._mean_diagonal()
        fro2 = np.einsum("gij,gij->g", self.h, self.h)
        delta2 = fro2 - d * mu ** 2  # ||h - mu I||^2
        beta2 = np.maximum(np.asarray(self.fourth, np.float64) - fro2, 0.0) / self.samples
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(delta2 > 0, beta2 / delta2, 0.0)
        return np.clip(alpha, 0.0, 1.0)

    def shrunk(self) -> LayerHessian:
        """``h`` moved toward its mean diagonal by `shrinkage` (the same object when there is none)."""
        alpha = self.shrinkage()
        if not np.any(alpha > 0):
            return self
        eye = np.eye(self.columns)[None]
        h = (1 - alpha)[:, None, None] * self.h + (alpha * self._mean_diagonal())[:, None, None] * eye
        return LayerHessian(h=h, samples=self.samples, fourth=None)

    def _mean_diagonal(self) -> np.ndarray:
        return np.einsum("gii->g", self.h) / self.columns

    @property
    def groups(self) -> int:
        return int(self.h.shape[0])

    @property
    def columns(self) -> int:
        return int(self.h.shape[1])

    def diagonal_importance(self, shape: tuple[int, ...]) -> np.ndarray:
        """``E[x_i**2]`` broadcast to the weight's shape (the 'activation' sensitivity)."""
        out = shape[0]
        diag = np.einsum("gii->gi", self.h)  # (groups, d)
        rows = diag[np.arange(out) // (out // self.groups)]
        return rows.reshape(shape)


def _conv_input_patches(module: Any, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(N, C*kh*kw, L) patches of ``inp`` exactly as the convolution saw them.

    Padding is derived from the input and output sizes (not read from ``module.padding``), so
    modules that pad before calling the convolution (TensorFlow-style 'same' padding, e.g.
    ``Conv2dStaticSamePadding``) get their real patches too; extra padding goes bottom/right.
    """
    import torch.nn.functional as F

    if inp.ndim == 3:  # Conv1d: treat as a 1-row image
        inp, out = inp.unsqueeze(-2), out.unsqueeze(-2)
        ks, st, dl = (1, module.kernel_size[0]), (1, module.stride[0]), (1, module.dilation[0])
    else:
        ks, st, dl = tuple(module.kernel_size), tuple(module.stride), tuple(module.dilation)
    pads = []
    for axis in (0, 1):
        total = (out.shape[2 + axis] - 1) * st[axis] + dl[axis] * (ks[axis] - 1) + 1 - inp.shape[2 + axis]
        total = max(0, int(total))
        pads.append((total // 2, total - total // 2))
    if any(a or b for a, b in pads):
        inp = F.pad(inp, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    cols = F.unfold(inp, ks, dilation=dl, stride=st)
    if cols.shape[2] != out.shape[2] * out.shape[3]:
        raise DataError(f"cannot reconstruct the input patches of a {type(module).__name__} "
                        f"(input {tuple(inp.shape)}, output {tuple(out.shape)})",
                        next_step="Use --sensitivity fisher and --assignment nearest for this model.")
    return cols


def calibration_row(model: Any, x: torch.Tensor, i: int) -> torch.Tensor:
    """Row ``i`` of a calibration batch, as a batch of one. Token-id rows of a model that declares
    its ``pad_id`` lose their trailing padding, so statistics come from real tokens only."""
    row = x[i:i + 1]
    pad = getattr(model, "pad_id", None)
    if isinstance(pad, int) and row.ndim == 2 and not row.is_floating_point():
        real = (row[0] != pad).nonzero()
        if len(real):
            row = row[:, : int(real.max()) + 1]
    return row


def collect_hessians(
    model: torch.nn.Module,
    inputs: Any,
    names: Iterable[str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, LayerHessian]:
    """``H`` of every named Linear/Conv1d/Conv2d weight, from one forward pass per calibration row."""
    import torch

    names = list(names)
    modules = dict(model.named_modules())
    owners: dict[str, Any] = {}
    for name in names:
        mod_name = name.rsplit(".", 1)[0] if "." in name else ""
        module = modules.get(mod_name)
        if not name.endswith("weight") or not isinstance(
                module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            raise ConfigError(f"GPTQ assignment and activation statistics support Linear/Conv weights "
                              f"only, not {name}",
                              next_step="Use --assignment nearest, or exclude that layer.")
        owners[name] = module
    x = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.array(inputs))
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"the calibration batch is empty (shape {tuple(x.shape)})",
                        next_step="Give at least one calibration input.")
    sums: dict[str, torch.Tensor] = {}
    fourths: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def make_hook(name: str, module: Any):
        def hook(_mod, args, output):
            inp = args[0].detach().to(torch.float64)
            if isinstance(module, torch.nn.Linear):
                flat = inp.reshape(-1, inp.shape[-1])
                h = (flat.T @ flat).unsqueeze(0)
                f = (flat.pow(2).sum(1) ** 2).sum().reshape(1)
                n = flat.shape[0]
            else:
                cols = _conv_input_patches(module, inp, output.detach())  # (N, C*k, L)
                g = module.groups
                cols = cols.reshape(cols.shape[0], g, cols.shape[1] // g, cols.shape[2])
                h = torch.einsum("ngdl,ngel->gde", cols, cols)
                f = (cols.pow(2).sum(2) ** 2).sum(dim=(0, 2))
                n = cols.shape[0] * cols.shape[3]
            sums[name] = sums[name] + h if name in sums else h
            fourths[name] = fourths[name] + f if name in fourths else f
            counts[name] = counts.get(name, 0) + n

        return hook

    handles = [m.register_forward_hook(make_hook(n, m)) for n, m in owners.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(len(x)):
                model(calibration_row(model, x, i))
                if progress:
                    progress(i + 1, len(x))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    out = {}
    for name in names:
        if name not in sums:
            raise DataError(f"the calibration batch never reached {name}",
                            next_step="Check the model's forward pass, or exclude that layer.")
        h = (sums[name] / max(counts[name], 1)).numpy()
        if not np.all(np.isfinite(h)):
            raise DataError(f"the calibration statistics of {name} are not finite",
                            next_step="Check the calibration inputs for NaN/inf.")
        out[name] = LayerHessian(h=h, samples=counts[name], fourth=(fourths[name] / max(counts[name], 1)).numpy())
    return out


def forward_order(model: torch.nn.Module, inputs: Any, names: Iterable[str]) -> list[str]:
    """``names`` (``<module>.weight``) in the order their modules first run on one input; names
    whose module never runs come last, in the given order."""
    import torch

    names = list(names)
    modules = dict(model.named_modules())
    seen: list[str] = []
    handles = []
    for name in names:
        module = modules.get(name.rsplit(".", 1)[0] if "." in name else "")
        if module is not None:
            handles.append(module.register_forward_pre_hook(
                lambda _m, _a, name=name: seen.append(name) if name not in seen else None))
    x = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.array(inputs))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return seen + [n for n in names if n not in seen]


# ------------------------------------------------------------------------------------------------
# the quantities shared by assignment and refit


@dataclass
class _Layer:
    """A weight viewed as (conv groups G, rows per group R, columns d), with its codebooks."""

    w: torch.Tensor  # float64 (G, R, d), the original weight
    h: torch.Tensor  # float64 (G, d, d)
    book_of_row: torch.Tensor  # long (G, R): codebook row of every weight row
    scale: torch.Tensor  # float64 (G, R): per-row scale (ones without int8_grid)

    @classmethod
    def build(cls, weight: np.ndarray, hessian: LayerHessian, book_of_row: np.ndarray,
              scale: np.ndarray | None) -> _Layer:
        import torch

        out = weight.shape[0]
        g = hessian.groups
        d = int(np.prod(weight.shape[1:])) if weight.ndim > 1 else 1
        if out % g or hessian.columns != d:
            raise ConfigError(f"calibration statistics ({g} groups of {hessian.columns} columns) do not fit "
                              f"a weight of shape {tuple(weight.shape)}",
                              next_step="Collect them from the same model the weights come from.")
        w = torch.from_numpy(np.asarray(weight, dtype=np.float64).reshape(g, out // g, d))
        s = np.ones(out) if scale is None else np.where(scale > 0, scale, 1.0).astype(np.float64)
        return cls(w=w, h=torch.from_numpy(hessian.h.astype(np.float64)),
                   book_of_row=torch.from_numpy(np.asarray(book_of_row, dtype=np.int64).reshape(g, -1)),
                   scale=torch.from_numpy(s.reshape(g, -1)))

    def decode(self, codebook: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return codebook[self.book_of_row[..., None], labels] * self.scale[..., None]

    def error(self, codebook: torch.Tensor, labels: torch.Tensor) -> float:
        """``tr(E H E^T)`` summed over groups: the output error this palette causes."""
        e = self.w - self.decode(codebook, labels)
        return float(((e @ self.h) * e).sum())


def _damped(h: torch.Tensor) -> torch.Tensor:
    import torch

    h = h.clone()
    diag = torch.diagonal(h, dim1=-2, dim2=-1)
    dead = diag <= 0
    diag[dead] = 1.0
    mean = diag.mean(dim=-1, keepdim=True)
    diag += DAMP * mean
    return h


def _upper_inverse_factor(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of H^-1 (what GPTQ's column updates use), damping more if needed."""
    import torch

    for extra in (0.0, 0.1, 1.0, 10.0):
        hh = h
        if extra:
            hh = h + extra * torch.diag_embed(torch.diagonal(h, dim1=-2, dim2=-1).mean(-1, keepdim=True)
                                              .expand(*h.shape[:-1]))
        lower, info = torch.linalg.cholesky_ex(hh)
        if int(info.max()) == 0:
            inv = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(inv, upper=True)
            if int(info.max()) == 0:
                return upper
    raise DataError("the calibration statistics of a layer are singular even after damping",
                    next_step="Use more calibration inputs, or --assignment nearest.")


def _midpoints(rows_cb: torch.Tensor) -> torch.Tensor:
    """(rows, max(k-1, 1)) midpoints between each weight row's sorted centroids (+inf when k=1)."""
    import torch

    mids = ((rows_cb[..., 1:] + rows_cb[..., :-1]) * 0.5).reshape(-1, rows_cb.shape[-1] - 1)
    if mids.shape[1] == 0:
        return torch.full((mids.shape[0], 1), math.inf, dtype=torch.float64)
    return mids.contiguous()


def _nearest(values: torch.Tensor, mids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest sorted centroid for every value; ``values`` (G, R) or (G, R, d),
    ``mids`` (G*R, k-1) from `_midpoints`."""
    import torch

    flat = values.reshape(mids.shape[0], -1).contiguous()
    return torch.searchsorted(mids, flat).reshape(values.shape)


# ------------------------------------------------------------------------------------------------


def gptq_assign(layer: _Layer, codebook: np.ndarray) -> np.ndarray:
    """Labels (G, R, d) chosen column by column with GPTQ's error feedback; ``codebook`` (books, k)
    must be sorted along each row."""
    import torch

    cb = torch.from_numpy(np.asarray(codebook, dtype=np.float64))
    g, r, d = layer.w.shape
    h = _damped(layer.h)
    # act-order: the columns with the largest input energy first (GPTQ's 'act_order')
    order = torch.argsort(torch.diagonal(h, dim1=-2, dim2=-1), dim=-1, descending=True)  # (G, d)
    gi = torch.arange(g)[:, None, None]
    h = h[gi, order[:, :, None], order[:, None, :]]
    w = torch.gather(layer.w, 2, order[:, None, :].expand(g, r, d)).clone()
    hinv = _upper_inverse_factor(h)
    rows_cb = cb[layer.book_of_row]  # (G, R, k)
    mids = _midpoints(rows_cb)
    scale = layer.scale
    labels = torch.empty((g, r, d), dtype=torch.int64)
    for i1 in range(0, d, BLOCK):
        i2 = min(i1 + BLOCK, d)
        w1 = w[:, :, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[:, i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, :, i]
            lab = _nearest(col / scale, mids)
            q = torch.gather(rows_cb, 2, lab[..., None])[..., 0] * scale
            e = (col - q) / h1[:, i, i][:, None]
            w1[:, :, i:] -= e[:, :, None] * h1[:, i, i:][:, None, :]
            err1[:, :, i] = e
            labels[:, :, i1 + i] = lab
        if i2 < d:
            w[:, :, i2:] -= err1 @ hinv[:, i1:i2, i2:]
    out = torch.empty_like(labels)
    out.scatter_(2, order[:, None, :].expand(g, r, d), labels)
    return out.numpy()


def refit_codebook(layer: _Layer, codebook: np.ndarray, labels: np.ndarray,
                   steps: int = CG_STEPS) -> np.ndarray:
    """Centroid values that minimise ``tr(E H E^T)`` for fixed ``labels`` (preconditioned CG from
    ``codebook``). ``labels`` index the returned rows as they did the input; the rows may come
    back unsorted, which palettes allow."""
    import torch

    cb0 = torch.from_numpy(np.asarray(codebook, dtype=np.float64))
    books, k = cb0.shape
    lab = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    flat = (layer.book_of_row[..., None] * k + lab).reshape(-1)  # codebook entry of every weight
    s = layer.scale[..., None].expand_as(layer.w)

    def gather(c: torch.Tensor) -> torch.Tensor:  # a codebook as a weight-shaped tensor (scaled)
        return c.reshape(-1)[flat].reshape(layer.w.shape) * s

    def scatter(t: torch.Tensor) -> torch.Tensor:  # adjoint of gather
        return torch.zeros(books * k, dtype=torch.float64).index_add_(0, flat, (t * s).reshape(-1))

    def matvec(c: torch.Tensor) -> torch.Tensor:
        return scatter(gather(c) @ layer.h)

    b = scatter(layer.w @ layer.h)
    diag_h = torch.diagonal(layer.h, dim1=-2, dim2=-1)[:, None, :].expand_as(layer.w)
    precond = torch.zeros(books * k, dtype=torch.float64).index_add_(0, flat, (diag_h * s * s).reshape(-1))
    used = precond > 0
    precond = torch.where(used, precond, torch.ones_like(precond))
    x = cb0.reshape(-1).clone()
    res = b - matvec(x)
    res[~used] = 0.0
    z = res / precond
    p = z.clone()
    rz = float(res @ z)
    start = abs(rz)
    for _ in range(steps):
        if rz <= 1e-24 * max(start, 1e-300):
            break
        ap = matvec(p)
        ap[~used] = 0.0
        denom = float(p @ ap)
        if denom <= 0:
            break
        alpha = rz / denom
        x += alpha * p
        res -= alpha * ap
        z = res / precond
        rz_new = float(res @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x.reshape(books, k).numpy()


def compensate(
    weight: np.ndarray,
    hessian: LayerHessian,
    codebook: np.ndarray,
    book_of_row: np.ndarray,
    scale: np.ndarray | None = None,
    *,
    rounds: int = 2,
    refit: bool = True,
    snap: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """GPTQ assignment to ``codebook`` (with optional refit rounds) for one weight.

    ``codebook`` (books, k) sorted rows, ``book_of_row`` (out,), ``scale`` (out,) or None: the
    palette decodes row ``r`` as ``scale[r] * codebook[book_of_row[r], labels[r]]``. ``snap``
    maps a refit codebook onto allowed values (e.g. integers for the int8 grid). Returns the
    codebook, labels of the weight's shape, and the output errors (``nearest``: nearest-centroid
    assignment to the input codebook; ``final``) for the report. The result is never worse than
    nearest-centroid assignment to the given codebook on the calibration statistics.
    """
    import torch

    layer = _Layer.build(weight, hessian.shrunk(), book_of_row, scale)
    cb = np.sort(np.asarray(codebook, dtype=np.float64), axis=1)
    rows_cb = torch.from_numpy(cb)[layer.book_of_row]
    nearest = _nearest(layer.w / layer.scale[..., None], _midpoints(rows_cb))
    best = (layer.error(torch.from_numpy(cb), nearest), cb, nearest.numpy())
    first = best[0]
    for _ in range(max(1, rounds)):
        labels = gptq_assign(layer, cb)
        err = layer.error(torch.from_numpy(cb), torch.from_numpy(labels))
        if err < best[0]:
            best = (err, cb, labels)
        if not refit:
            break
        new = refit_codebook(layer, cb, labels)
        if snap is not None:
            new = snap(new)
        err = layer.error(torch.from_numpy(new), torch.from_numpy(labels))
        if err < best[0]:
            best = (err, new, labels)
        # keep rows sorted for the next assignment; labels of the kept best stay consistent
        cb = np.sort(new, axis=1)
    err, cb_best, labels_best = best
    return cb_best, labels_best.reshape(weight.shape), {"nearest": first, "final": err}
