"""`palettize(model, config)`: cluster the selected weights and return palettes, model, report.

One entry function, the handler found by the config's type (torchao's ``quantize_`` shape,
STYLE.md item 2), so a later algorithm adds a config class and registers a handler instead of
growing flags here. The input model is never modified: the result carries a deep copy with the
decoded weights put back, ready for evaluation.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError, DataError, InternalError, NothingToDoError
from pipeline.palettize.config import Algorithm, Assignment, Granularity, PalettizeConfig, Sensitivity
from pipeline.palettize.kmeans1d import kmeans_1d_many
from pipeline.palettize.palette import Palette
from pipeline.palettize.report import Report, TensorReport

if TYPE_CHECKING:
    import torch

    from pipeline.palettize.budget import Budget
    from pipeline.palettize.gptq import LayerHessian
    from pipeline.palettize.tune import TuneReport

#: progress(tensor_name, done, total); the CLI draws a bar with it, the library never does
Progress = Callable[[str, int, int], None]


@dataclass
class PalettizeResult:
    palettes: dict[str, Palette]
    model: Any  # torch.nn.Module: a copy of the input with decoded weights
    report: Report
    skipped: list[tuple[str, str]] = field(default_factory=list)
    config: PalettizeConfig | None = None  # as applied: a ``target_bits`` budget shows as overrides
    budget: Budget | None = None
    tune: TuneReport | None = None  # with ``tune_epochs``: held-back loss before and after


_HANDLERS: dict[type, Callable[..., PalettizeResult]] = {}


def register_handler(config_type: type) -> Callable:
    """Register the function that palettizes with configs of ``config_type`` (once per type)."""

    def deco(fn: Callable[..., PalettizeResult]) -> Callable[..., PalettizeResult]:
        if config_type in _HANDLERS:
            raise InternalError(
                f"a palettize handler for {config_type.__name__} is already registered "
                f"({_HANDLERS[config_type].__qualname__})"
            )
        _HANDLERS[config_type] = fn
        return fn

    return deco


def palettize(
    model: torch.nn.Module,
    config: PalettizeConfig | None = None,
    *,
    calibration: Any = None,
    sample_weights: dict[str, np.ndarray] | None = None,
    hessians: dict[str, LayerHessian] | None = None,
    tuning: Any = None,
    progress: Progress | None = None,
) -> PalettizeResult:
    """Palettize ``model`` as ``config`` says (default: `PalettizeConfig()`).

    ``calibration``: a batch of model inputs (batch first), needed when the config asks for a
    ``sensitivity``, ``gptq`` assignment, or a sensitivity-weighted ``target_bits`` budget.
    ``sample_weights`` optionally maps a parameter name to a non-negative array of the weight's
    shape: the k-means then minimises the *weighted* squared error (replaces the estimate that
    ``config.sensitivity`` would make). ``hessians``: precomputed `collect_hessians` statistics
    for GPTQ (callers that palettize one model several times compute them once). ``tuning``: the
    inputs ``tune_epochs`` tunes on (e.g. augmented calibration inputs; default ``calibration``).
    """
    config = PalettizeConfig() if config is None else config
    handler = _HANDLERS.get(type(config))
    if handler is None:
        known = ", ".join(sorted(t.__name__ for t in _HANDLERS))
        raise ConfigError(
            f"no palettizer handles configs of type {type(config).__name__}; known types: {known}",
            next_step="Pass one of those config types.",
        )
    return handler(model, config, calibration=calibration, sample_weights=sample_weights, hessians=hessians,
                   tuning=tuning, progress=progress)


# ------------------------------------------------------------------------------------------------
# layer selection


def _type_names(module: Any, recorded: str | None = None) -> set[str]:
    names = {cls.__name__ for cls in type(module).__mro__}
    original = getattr(module, "original_name", None)  # TorchScript keeps the class name here
    if isinstance(original, str):
        names.add(original)
    if recorded:
        names.add(recorded)
    return names


def _recorded_types(model: Any) -> dict[str, str]:
    """Module path -> original class name, from a torch.export graph's ``nn_module_stack``.

    An unflattened ``torch.export`` program keeps the module names but not their classes (every
    submodule is a plain ``Module``); the graph nodes still record what each one was.
    """
    nodes = getattr(getattr(model, "graph", None), "nodes", ())
    out: dict[str, str] = {}
    if callable(nodes):  # a TorchScript graph, not an fx one
        return out
    for node in nodes:
        stack = getattr(node, "meta", {}).get("nn_module_stack") or {}
        for path, kind in stack.values():
            name = kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
            out.setdefault(str(path), name)
    return out


def select_weights(model: torch.nn.Module, config: PalettizeConfig) -> tuple[list[tuple[str, Any]], list]:
    """(name, parameter) of every weight to cluster, and (name, reason) for the ones left dense.

    Candidates are the ``weight`` parameters of modules whose class (or a base class) is named in
    ``module_types``; include/exclude regexes are searched in the parameter name.
    """
    wanted = set(config.module_types)
    candidates: list[tuple[str, Any]] = []
    seen: dict[int, str] = {}
    skipped: list[tuple[str, str]] = []
    recorded = _recorded_types(model)
    for mod_name, module in model.named_modules(remove_duplicate=False):
        if not (_type_names(module, recorded.get(mod_name)) & wanted):
            continue
        param = getattr(module, "weight", None)
        if param is None or not hasattr(param, "detach") or getattr(param, "ndim", 0) < 1:
            continue
        name = f"{mod_name}.weight" if mod_name else "weight"
        if id(param) in seen:
            if seen[id(param)] != name:
                skipped.append((name, f"shares its tensor with {seen[id(param)]} (clustered once)"))
            continue
        seen[id(param)] = name
        candidates.append((name, param))
    names = [n for n, _ in candidates]
    if config.include is not None:
        for pattern in config.include:
            if not any(re.search(pattern, n) for n in names):
                some = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
                raise ConfigError(
                    f"include pattern {pattern!r} matches no {'/'.join(config.module_types)} weight; "
                    f"weights look like: {some or '(none)'}",
                    next_step="Fix the pattern (a Python regex searched in parameter names).",
                    field="include",
                )
    chosen = []
    for name, param in candidates:
        if config.include is not None and not any(re.search(p, name) for p in config.include):
            skipped.append((name, "not matched by include"))
        elif config.exclude is not None and any(re.search(p, name) for p in config.exclude):
            skipped.append((name, "matched by exclude"))
        else:
            chosen.append((name, param))
    return chosen, skipped


# ------------------------------------------------------------------------------------------------
# one tensor


def palettize_array(
    name: str, weight: np.ndarray, config: PalettizeConfig, sample_weight: np.ndarray | None = None
) -> Palette:
    """Cluster one weight array (axis 0 = output channels) into a `Palette`."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim == 0:
        raise ConfigError(f"{name} is a scalar; nothing to palettize", field="module_types")
    if not np.all(np.isfinite(w)):
        raise DataError(
            f"weight {name} contains NaN or infinite values; k-means cannot cluster it",
            next_step="Check the model file, or leave this layer dense with --exclude.",
            tensor=name,
        )
    out = w.shape[0]
    flat = w.reshape(out, -1).astype(np.float64)
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.shape != w.shape:
            raise ConfigError(
                f"sample weights for {name} have shape {sw.shape}, the weight has {w.shape}",
                next_step="Give one non-negative number per weight element.",
            )
        sw = sw.reshape(out, -1)
    scale = None
    if config.int8_grid:
        scale = (np.abs(w.reshape(out, -1)).max(axis=1) / np.float32(127)).astype(np.float32)
        safe = np.where(scale > 0, scale, 1.0).astype(np.float64)
        flat = flat / safe[:, None]
        zero_rows = scale == 0
        if zero_rows.any():  # all-zero channels decode to 0 whatever their code: ignore them
            sw = np.ones_like(flat) if sw is None else sw.copy()
            sw[zero_rows] = 0.0
    if config.granularity is Granularity.PER_CHANNEL_GROUP:
        g = int(config.group_size)
        bounds = list(range(0, out, g)) + [out]
        group_size: int | None = g
    else:
        bounds = [0, out]
        group_size = None
    rows = [flat[a:b].ravel() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    row_w = None if sw is None else [sw[a:b].ravel() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    k = config.clusters
    results = kmeans_1d_many(
        rows, k, weights=row_w, algorithm=Algorithm(config.algorithm).value, init=config.init.value,
        seed=config.seed,
    )
    codebook = np.empty((len(rows), k), dtype=np.float32)
    indices = np.empty(flat.shape, dtype=np.uint8)
    for r, (res, (a, b)) in enumerate(zip(results, zip(bounds[:-1], bounds[1:], strict=True), strict=True)):
        cent, labels = res.centroids, res.labels
        if config.int8_grid:
            cent, labels = _snap_to_int_grid(rows[r], None if row_w is None else row_w[r], cent)
        cent32 = cent.astype(np.float32)
        codebook[r, : cent32.size] = cent32
        codebook[r, cent32.size :] = cent32[-1]
        indices[a:b] = labels.reshape(b - a, -1).astype(np.uint8)
    return Palette(name=name, shape=tuple(w.shape), codebook=codebook, indices=indices.reshape(w.shape),
                   group_size=group_size, scale=scale)


def _snap_to_int_grid(
    u: np.ndarray, w: np.ndarray | None, centroids: np.ndarray, max_iter: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Move centroids onto integers in [-127, 127] and reassign every value to its nearest one.

    Then a few integer-constrained Lloyd steps (centroid = rounded mean of its members, which is
    the best integer for that member set), kept only while the weighted error drops.
    """

    # Midpoints of integer centroids are multiples of 0.5, so every half-unit cell of u lies on
    # one side of each of them: a 509-entry table gives the nearest centroid (ties either way).
    cell = np.clip(np.floor(2.0 * u), -254, 254).astype(np.int64) + 254
    cell_centres = (np.arange(509) - 254) * 0.5 + 0.25

    def assign(c: np.ndarray) -> tuple[np.ndarray, float]:
        if c.size == 1:
            labels = np.zeros(u.size, dtype=np.int64)
        else:
            labels = np.searchsorted((c[1:] + c[:-1]) * 0.5, cell_centres, side="left")[cell]
        d = u - c[labels]
        d2 = d * d
        return labels, float(d2.sum() if w is None else (d2 * w).sum())

    c = np.unique(np.clip(np.rint(centroids), -127, 127))
    labels, err = assign(c)
    for _ in range(max_iter):
        cnt = np.bincount(labels, weights=w, minlength=c.size)
        sums = np.bincount(labels, weights=u if w is None else u * w, minlength=c.size)
        means = np.where(cnt > 0, sums / np.where(cnt > 0, cnt, 1.0), c)
        new_c = np.unique(np.clip(np.rint(means), -127, 127))
        if np.array_equal(new_c, c):
            break
        new_labels, new_err = assign(new_c)
        if new_err >= err:
            break
        c, labels, err = new_c, new_labels, new_err
    used = np.bincount(labels, minlength=c.size) > 0
    if not used.all():
        c, labels = c[used], (np.cumsum(used) - 1)[labels]
    return c, labels


# ------------------------------------------------------------------------------------------------
# the handler for PalettizeConfig


@register_handler(PalettizeConfig)
def _palettize_kmeans(
    model: torch.nn.Module,
    config: PalettizeConfig,
    *,
    calibration: Any = None,
    sample_weights: dict[str, np.ndarray] | None = None,
    hessians: dict[str, LayerHessian] | None = None,
    tuning: Any = None,
    progress: Progress | None = None,
) -> PalettizeResult:
    import torch

    t_start = time.perf_counter()
    work, skipped = _work(model, config)
    unknown = sorted(set(sample_weights or {}) - {n for n, _, _ in work})
    if unknown:
        raise ConfigError(
            f"sample weights given for tensors that are not clustered: {', '.join(unknown[:5])}",
            next_step="Key sample weights by the clustered parameter names.",
        )
    tuning = calibration if tuning is None else tuning
    if config.tune_epochs and tuning is None:
        raise ConfigError(
            "tune_epochs needs calibration inputs to tune on, and none were given",
            next_step="Pass calibration= (or tuning=) a batch of model inputs (CLI: --data ...), or set "
            "tune_epochs 0.",
            field="tune_epochs",
        )
    sens, hess = _calibration_statistics(model, config, work, calibration, sample_weights, hessians)
    budget = None
    applied = config
    if config.target_bits is not None:
        from pipeline.palettize.budget import BudgetConfig, plan_budget

        dense_weights = {n: p.detach().to(device="cpu", dtype=torch.float32).numpy() for n, p, _ in work}
        budget = plan_budget(dense_weights, sens or None,
                             BudgetConfig(target_bits=config.target_bits, int8_grid=config.int8_grid),
                             comparable=config.sensitivity in (Sensitivity.FISHER, Sensitivity.OUTPUT))
        applied = budget.apply_to(config)
        work = [(n, p, applied.resolve(n) or r) for n, p, r in work]
    palettes: dict[str, Palette] = {}
    rows: list[TensorReport] = []
    seconds: dict[str, float] = {}
    new_model = copy.deepcopy(model)
    targets = dict(new_model.named_parameters(remove_duplicate=False))
    pending = [n for n, _, r in work if r.assignment is Assignment.GPTQ and n not in hess]
    if pending:  # sequential GPTQ: later layers see the outputs of the already palettized ones
        from pipeline.palettize.gptq import SEQUENTIAL_PASSES, forward_order

        rank = {n: i for i, n in enumerate(forward_order(model, calibration, [n for n, _, _ in work]))}
        work.sort(key=lambda item: rank[item[0]])
        pending.sort(key=lambda n: rank[n])
        chunk = math.ceil(len(pending) / SEQUENTIAL_PASSES)
    for i, (name, param, resolved) in enumerate(work):
        if progress:
            progress(name, i, len(work))
        t0 = time.perf_counter()
        dense = param.detach().to(device="cpu", dtype=torch.float32).numpy()
        sw = sens.get(name)
        if resolved.assignment is Assignment.GPTQ:
            if name not in hess:
                from pipeline.palettize.gptq import collect_hessians

                names = pending[pending.index(name):][:chunk]
                hess.update(collect_hessians(new_model, calibration, names))
            if sw is None:  # GPTQ's own statistics weight the k-means: E[x**2] of each input
                sw = hess[name].diagonal_importance(dense.shape)
            pal = palettize_array(name, dense, resolved, sw)
            pal = _compensated(pal, dense, hess[name])
        else:
            pal = palettize_array(name, dense, resolved, sw)
        decoded = pal.decode()
        palettes[name] = pal
        seconds[name] = time.perf_counter() - t0
        target = targets[name]
        with torch.no_grad():
            target.copy_(torch.from_numpy(decoded).to(dtype=target.dtype, device=target.device))
    tuned = None
    if config.tune_epochs:
        from pipeline.palettize.tune import tune_palettes

        t0 = time.perf_counter()
        tick = (lambda done, total: progress("tuning", done, total)) if progress else None
        palettes, tuned = tune_palettes(model, new_model, palettes, tuning, epochs=config.tune_epochs,
                                        lr=config.tune_lr, seed=config.seed, progress=tick)
        share = (time.perf_counter() - t0) / len(palettes)
        seconds = {n: s + share for n, s in seconds.items()}
    dense_of = {n: p for n, p, _ in work}
    for name, pal in palettes.items():
        dense = dense_of[name].detach().to(device="cpu", dtype=torch.float32).numpy()
        rows.append(TensorReport.build(pal, dense, pal.decode(), seconds[name]))
    if progress:
        progress("", len(work), len(work))
    n_params = sum(p.numel() for p in model.parameters())
    report = Report(tensors=rows, skipped=skipped, model_params=int(n_params),
                    seconds=time.perf_counter() - t_start)
    return PalettizeResult(palettes=palettes, model=new_model, report=report, skipped=skipped, config=applied,
                           budget=budget, tune=tuned)


def _work(model: Any, config: PalettizeConfig) -> tuple[list[tuple[str, Any, PalettizeConfig]], list]:
    """(name, parameter, resolved config) of every tensor to cluster, and (name, why) of the rest."""
    import torch

    chosen, skipped = select_weights(model, config)
    work: list[tuple[str, Any, PalettizeConfig]] = []
    for name, param in chosen:
        resolved = config.resolve(name)
        if resolved is None:
            skipped.append((name, "left dense by overrides"))
        elif param.numel() < resolved.weight_threshold:
            skipped.append((name, f"{param.numel()} elements < weight_threshold {resolved.weight_threshold}"))
        elif param.numel() and not torch.is_floating_point(param):
            skipped.append((name, f"dtype {param.dtype} is not floating point"))
        else:
            work.append((name, param, resolved))
    if not work:
        why = "; ".join(f"{n}: {r}" for n, r in skipped[:5]) or (
            f"the model has no {'/'.join(config.module_types)} weights"
        )
        raise NothingToDoError(
            f"nothing to palettize in this model ({why})",
            next_step="Lower weight_threshold, widen module_types, or change include/exclude.",
        )
    return work, skipped


def _calibration_statistics(
    model: Any, config: PalettizeConfig, work: list, calibration: Any,
    sample_weights: dict[str, np.ndarray] | None, hessians: dict[str, LayerHessian] | None,
) -> tuple[dict[str, np.ndarray], dict[str, LayerHessian]]:
    """Sensitivities (given, or estimated as ``config.sensitivity`` says) and GPTQ statistics for
    the layers that use GPTQ; a clear error when calibration inputs are needed but missing."""
    names = [n for n, _, _ in work]
    gptq_names = [n for n, _, r in work if r.assignment is Assignment.GPTQ]
    sens = dict(sample_weights or {})
    estimate = config.sensitivity is not Sensitivity.NONE and not sens
    need_h = [n for n in gptq_names if n not in (hessians or {})]
    if (estimate or need_h) and calibration is None:
        wants = []
        if estimate:
            wants.append(f"sensitivity {config.sensitivity.value!r}")
        if need_h:
            wants.append("assignment 'gptq'")
        raise ConfigError(
            f"{' and '.join(wants)} need calibration inputs, and none were given",
            next_step="Pass calibration= a batch of model inputs (CLI: --data default|images|sentences|"
            "file:PATH), or set sensitivity none and assignment nearest.",
            field="sensitivity" if estimate else "assignment",
        )
    if estimate:
        from pipeline.palettize.sensitivity import estimate_sensitivity

        sens = estimate_sensitivity(model, calibration, names, method=config.sensitivity)
    return sens, dict(hessians or {})


def _compensated(pal: Palette, dense: np.ndarray, hessian: LayerHessian) -> Palette:
    """``pal`` with GPTQ-assigned indices and a refit codebook (integers kept on the int8 grid)."""
    from pipeline.palettize.gptq import compensate

    snap = (lambda c: np.clip(np.rint(c), -127, 127)) if pal.int8_grid else None
    codebook, labels, _ = compensate(dense, hessian, pal.codebook, pal.group_of_channel(), pal.scale, snap=snap)
    return Palette(name=pal.name, shape=pal.shape, codebook=codebook.astype(np.float32),
                   indices=labels.astype(np.uint8), group_size=pal.group_size, scale=pal.scale)


def bits_per_weight(palettes: dict[str, Palette]) -> float:
    """Average packed bits per clustered weight, codebooks (and int8 scales) included."""
    bits = 0.0
    numel = 0
    for p in palettes.values():
        n = int(np.prod(p.shape))
        side = (8 * p.n_groups * p.k + 32 * p.out_channels) if p.int8_grid else 32 * p.n_groups * p.k
        bits += n * p.index_bits + side
        numel += n
    return bits / numel if numel else math.nan
