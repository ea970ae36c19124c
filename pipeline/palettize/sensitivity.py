"""How much each weight value matters to the model's output, estimated on a small calibration batch.

Why: plain k-means spends its centroids where the weight values are dense, not where an error
hurts the output. Weighting each value by an importance estimate (Apple coremltools' "sensitive
k-means"; GPTQ/AWQ use the same second-order idea for rounding) moves centroids toward the values
that matter, and the same numbers tell a per-layer budget (`pipeline.palettize.budget`) where
extra clusters pay off. Three estimates, all label-free:

* ``fisher``: the diagonal of the Fisher information of the output, ``E[g**2]`` with ``g`` the
  per-sample gradient of the output w.r.t. the weight. For classifiers ``g`` is the gradient of
  ``log p(y)`` for a label ``y`` drawn from the model's own softmax (the true Fisher, in
  expectation); for anything else (embeddings, dense maps) ``g`` is the gradient of ``r . f(x)``
  for a random Gaussian direction ``r``, whose square estimates ``diag(J^T J)`` (the output's
  squared change per unit of weight change). To second order the loss (or squared output
  change) caused by a weight error ``dw`` is ``0.5 * sum(F * dw**2)``, comparable across layers.
* ``activation``: ``E[x_i**2]`` of the input feature each weight multiplies (for convolutions,
  of the input patch element), i.e. the squared output error of *that layer* per unit of weight
  error. Cheap (forward only), but not comparable across layers without normalisation.
* ``output``: ``activation`` made comparable across layers by measurement. Each layer in turn
  is clustered (per tensor, `OUTPUT_PROBE_CLUSTERS` centroids, activation-weighted), the model
  is run on the calibration inputs with only that layer changed, and the layer's importances are
  scaled so that their predicted error ``sum(s * dw**2)`` equals the output distortion caused
  (mean KL divergence of the softmax for classifiers, squared output change relative to the
  output's energy otherwise). Within a layer the values keep their activation weights; across
  layers the numbers add up like Fisher's, so a cluster budget spends bits where the *model
  output* suffers, not where a layer's own output does. One forward pass per layer.

The result maps a parameter name to a float32 array of the weight's shape, ready for
``palettize(model, config, sample_weights=...)``. A small floor (``floor`` times the tensor's
mean importance) keeps values that the batch never exercised from being ignored entirely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError, DataError
from pipeline.palettize.config import Sensitivity
from pipeline.palettize.gptq import calibration_row

if TYPE_CHECKING:
    import torch


#: the methods, defined beside `PalettizeConfig` (which names one in its ``sensitivity`` field)
SensitivityMethod = Sensitivity


class OutputKind(str, Enum):  # noqa: UP042
    AUTO = "auto"
    CLASSIFIER = "classifier"  # logits over classes: Fisher of the softmax
    DENSE = "dense"  # any other output: random-projection estimate of diag(J^T J)


DEFAULT_FLOOR = 1e-3
#: clusters of the probe palette that ``output`` sensitivity measures each layer with
OUTPUT_PROBE_CLUSTERS = 32
#: at most this many calibration inputs are run per probed layer
OUTPUT_PROBE_ROWS = 64
OUTPUT_PROBE_BATCH = 16


def _method(value: Any) -> SensitivityMethod:
    try:
        return SensitivityMethod(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in SensitivityMethod)
        raise ConfigError(f"sensitivity must be one of {allowed} (got {value!r})",
                          next_step="Choose one of those methods.", field="sensitivity") from None


def estimate_sensitivity(
    model: torch.nn.Module,
    inputs: Any,
    names: Iterable[str] | None = None,
    *,
    method: SensitivityMethod | str = SensitivityMethod.FISHER,
    output_kind: OutputKind | str = OutputKind.AUTO,
    projections: int = 1,
    seed: int = 0,
    floor: float = DEFAULT_FLOOR,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Importance of every value of the weights ``names`` (default: every Linear/Conv weight).

    ``inputs``: a calibration batch (torch tensor or numpy array, batch first; int64 token ids are
    fine). Keep it small (8-32 rows): ``fisher`` runs one backward pass per row and projection.
    Returns ``{name: float32 array of the weight's shape}``; ``method="none"`` returns ``{}``.
    """
    import torch

    method = _method(method)
    if method is SensitivityMethod.NONE:
        return {}
    try:
        kind = OutputKind(output_kind)
    except ValueError:
        raise ConfigError(f"output_kind must be one of {[k.value for k in OutputKind]} (got {output_kind!r})",
                          field="output_kind") from None
    if not isinstance(projections, int) or projections < 1:
        raise ConfigError(f"projections must be a positive integer (got {projections!r})", field="projections")
    if not (isinstance(floor, (int, float)) and floor >= 0):
        raise ConfigError(f"floor must be a non-negative number (got {floor!r})", field="floor")
    x = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.array(inputs))
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"the calibration batch is empty (shape {tuple(x.shape)})",
                        next_step="Give at least one calibration input.")
    params = dict(model.named_parameters(remove_duplicate=False))
    if names is None:
        names = _default_weight_names(model)
    names = list(names)
    missing = [n for n in names if n not in params]
    if missing:
        raise ConfigError(f"no parameter named {missing[0]!r} in the model",
                          next_step="Use the parameter names that palettize reports (e.g. 'fc.weight').")
    if not names:
        return {}
    was_training = model.training
    model.eval()
    try:
        if method is SensitivityMethod.FISHER:
            raw = _fisher(model, x, {n: params[n] for n in names}, kind, projections, seed, progress)
        elif method is SensitivityMethod.OUTPUT:
            raw = _output(model, x, names, kind, floor, progress)
        else:
            raw = _activation(model, x, names, progress)
    finally:
        model.train(was_training)
    out: dict[str, np.ndarray] = {}
    for name in names:
        imp = np.asarray(raw[name], dtype=np.float64)
        if not np.all(np.isfinite(imp)):
            raise DataError(f"the {method.value} sensitivity of {name} is not finite",
                            next_step="Check the calibration inputs (NaN/inf) or use --sensitivity none.")
        mean = float(imp.mean()) if imp.size else 0.0
        imp = imp + (floor * mean if mean > 0 else 1.0)
        out[name] = imp.astype(np.float32)
    return out


def _default_weight_names(model: torch.nn.Module) -> list[str]:
    import torch

    names = []
    for mod_name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    return names


def first_tensor(out: Any) -> torch.Tensor:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)) and out:
        return first_tensor(out[0])
    for attr in ("logits", "last_hidden_state"):
        if hasattr(out, attr):
            return getattr(out, attr)
    raise DataError(f"cannot find a tensor in the model output ({type(out).__name__})")


def _fisher(model, x, params: dict, kind: OutputKind, projections: int, seed: int, progress) -> dict:
    """Sum over rows (and projections) of the squared per-row gradient, divided by their count."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    flags = {n: p.requires_grad for n, p in params.items()}
    every = list(model.parameters())
    old_flags = [p.requires_grad for p in every]
    for p in every:
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    total = len(x) * projections
    done = 0
    try:
        for i in range(len(x)):
            row = calibration_row(model, x, i)
            for _ in range(projections):
                out = first_tensor(model(row)).float()
                is_classifier = kind is OutputKind.CLASSIFIER or (
                    kind is OutputKind.AUTO and out.ndim == 2 and out.shape[1] > 1 and _looks_like_logits(model, out)
                )
                if is_classifier:
                    logp = torch.log_softmax(out, dim=-1)
                    y = torch.multinomial(logp.detach().exp()[0], 1, generator=gen)
                    scalar = logp[0, y[0]]
                else:
                    r = torch.randn(out.shape, generator=gen)
                    scalar = (out * r).sum()
                grads = torch.autograd.grad(scalar, list(params.values()), allow_unused=True)
                for n, g in zip(params, grads, strict=True):
                    if g is not None:
                        acc[n] += g.detach().double() ** 2
                done += 1
                if progress:
                    progress(done, total)
    finally:
        for p, f in zip(every, old_flags, strict=True):
            p.requires_grad_(f)
        for n, p in params.items():
            p.requires_grad_(flags[n])
    return {n: (a / max(total, 1)).numpy() for n, a in acc.items()}


def _looks_like_logits(model, out) -> bool:
    """AUTO mode: a (batch, n>1) output is taken as class logits unless the model says otherwise
    (``model.output_kind``) or its rows are unit-norm (a normalised embedding)."""
    import torch

    declared = getattr(model, "output_kind", None)
    if declared is not None:
        return str(getattr(declared, "value", declared)) == OutputKind.CLASSIFIER.value
    norms = torch.linalg.vector_norm(out.detach(), dim=-1)
    return not bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3))


def _activation(model, x, names: list[str], progress) -> dict:
    """E[x**2] of the input element each weight value multiplies: the diagonal of the layer
    statistics GPTQ uses (forward passes only, the convolutions' real padding included)."""
    from pipeline.palettize.gptq import collect_hessians

    params = dict(model.named_parameters(remove_duplicate=False))
    stats = collect_hessians(model, x, names, progress=progress)
    return {n: np.array(stats[n].diagonal_importance(tuple(params[n].shape)), dtype=np.float64) for n in names}


def _forward_probe(model, x) -> torch.Tensor:
    import torch

    with torch.no_grad():
        outs = [first_tensor(model(x[i:i + OUTPUT_PROBE_BATCH])).double()
                for i in range(0, len(x), OUTPUT_PROBE_BATCH)]
    return torch.cat(outs)


def distortion(ref: torch.Tensor, out: torch.Tensor, classifier: bool) -> torch.Tensor:
    """How far ``out`` is from ``ref``, as a differentiable scalar: mean KL(softmax(ref) ||
    softmax(out)) over rows for classifiers, else the squared change relative to the output's
    energy."""
    import torch

    if classifier:
        logp, logq = torch.log_softmax(ref, dim=-1), torch.log_softmax(out, dim=-1)
        return (logp.exp() * (logp - logq)).sum(dim=-1).mean().clamp_min(0.0)
    energy = (ref * ref).sum()
    return ((out - ref) ** 2).sum() / torch.where(energy > 0, energy, torch.ones_like(energy))


def output_distortion(ref: torch.Tensor, out: torch.Tensor, classifier: bool) -> float:
    """`distortion` as a float."""
    return float(distortion(ref, out, classifier))


def _output(model, x, names: list[str], kind: OutputKind, floor: float, progress) -> dict:
    """`_activation` importances, each layer's scaled by (measured output distortion) / (predicted
    error) of a probe palette of that layer alone."""
    import torch

    from pipeline.palettize.apply import palettize_array
    from pipeline.palettize.config import PalettizeConfig

    act = _activation(model, x, names, None)
    params = dict(model.named_parameters(remove_duplicate=False))
    probe = x[:OUTPUT_PROBE_ROWS]
    ref = _forward_probe(model, probe)
    classifier = kind is OutputKind.CLASSIFIER or (
        kind is OutputKind.AUTO and ref.ndim == 2 and ref.shape[1] > 1 and _looks_like_logits(model, ref))
    probe_config = PalettizeConfig(clusters=OUTPUT_PROBE_CLUSTERS, algorithm="lloyd", weight_threshold=1)
    scales: dict[str, float] = {}
    for i, name in enumerate(names):
        param = params[name]
        dense = param.detach().to(device="cpu", dtype=torch.float64).numpy()
        s = act[name] + floor * max(float(act[name].mean()), 1e-300)
        k = min(OUTPUT_PROBE_CLUSTERS, max(2, dense.size // 2))
        cfg = probe_config if k == OUTPUT_PROBE_CLUSTERS else dataclasses.replace(probe_config, clusters=k)
        decoded = palettize_array(name, dense.astype(np.float32), cfg, s).decode().astype(np.float64)
        predicted = float((s * (dense - decoded) ** 2).sum())
        saved = param.detach().clone()
        try:
            with torch.no_grad():
                param.copy_(torch.from_numpy(decoded).to(dtype=param.dtype, device=param.device))
            measured = output_distortion(ref, _forward_probe(model, probe), classifier)
        finally:
            with torch.no_grad():
                param.copy_(saved)
        scales[name] = measured / predicted if predicted > 0 else 0.0
        if progress:
            progress(i + 1, len(names))
    # a layer whose probe did not move the output at all still ranks below every layer that did
    floor_scale = min((v for v in scales.values() if v > 0), default=1.0) * 1e-3
    return {n: act[n] * (v if v > 0 else floor_scale) for n, v in scales.items()}
