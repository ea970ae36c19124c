"""End-to-end tuning of palettes on calibration inputs, every index kept as it is.

After clustering (and GPTQ), each palette's continuous parameters are nudged so that the whole
model's output moves back toward the dense model's: on the int8 grid, the per-channel scales
(the integer codes stay, so the file is still exact int8 and the bits per weight do not change);
otherwise the codebook entries. Each one learns a multiplier, starting at 1, with Adam and a
cosine learning-rate schedule (a multiplier makes one learning rate fit every layer's scale).

The loss is the one ``output`` sensitivity measures (`output_distortion`): KL of the dense
softmax for classifiers, squared output change relative to the output's energy otherwise. A
tenth of the tuning inputs is held back; the multipliers of the epoch with the lowest held-back
loss are kept, and none at all when no epoch beats the untuned palettes there, so tuning never
returns palettes that do worse on inputs it did not train on (they may still do worse on other
data: a small calibration set of few photos overfits, which is why augmented inputs help).

Gradients come from the model's own backward pass with respect to the decoded weights
(``torch.autograd.grad``, so no ``.grad`` is left anywhere) and are carried to the multipliers by
the chain rule, so any module whose weights are parameters works
(eager, TorchScript, an unflattened ``torch.export`` program).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.palettize.palette import Palette

TUNE_BATCH = 16
#: fraction of the tuning inputs held back to pick the epoch (at least one batch's worth of rows)
HOLDOUT_FRACTION = 0.1
MIN_TUNE_INPUTS = 8


@dataclass(frozen=True)
class TuneReport:
    """Held-back loss before and after tuning, and which epoch was kept (0: none, untuned)."""

    inputs: int
    held_back: int
    loss_before: float
    loss_after: float
    epoch_kept: int
    epochs: int
    classifier: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _as_tensor(x: Any):
    import torch

    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _outputs(model: Any, x: Any):
    import torch

    from pipeline.palettize.sensitivity import first_tensor

    with torch.no_grad():
        return torch.cat([first_tensor(model(x[i:i + 2 * TUNE_BATCH])).double()
                          for i in range(0, len(x), 2 * TUNE_BATCH)])


class _Tunable:
    """One palette: fixed codes, a learnable multiplier, and its weight in the model."""

    def __init__(self, pal: Palette, param: Any) -> None:
        import torch

        self.pal, self.param = pal, param
        idx = torch.from_numpy(pal.indices.reshape(pal.out_channels, -1).astype(np.int64))
        groups = torch.from_numpy(pal.group_of_channel().astype(np.int64))
        book = torch.from_numpy(pal.codebook.astype(np.float64))
        if pal.int8_grid:  # weight = codes * (scale * m): one multiplier per output channel
            self.codes = book[groups[:, None], idx]
            self.base = torch.from_numpy(pal.scale.astype(np.float64))
        else:  # weight = (codebook * m)[group, index]: one multiplier per codebook entry
            self.idx, self.groups = idx, groups
            self.base = book
        self.mult = torch.ones_like(self.base, requires_grad=True)

    def weight(self):
        if self.pal.int8_grid:
            return self.codes * (self.base * self.mult)[:, None]
        return (self.base * self.mult)[self.groups[:, None], self.idx]

    def write(self) -> None:
        import torch

        with torch.no_grad():
            self.param.copy_(self.weight().reshape(self.param.shape).to(self.param.dtype))

    def backward_from(self, grad: Any) -> None:
        """Carry the loss gradient with respect to the weight on to the multiplier."""
        if grad is not None:
            w = self.weight()
            w.backward(grad.detach().double().reshape(w.shape))

    def palette(self, mult: Any) -> Palette:
        p = self.pal
        new = (self.base * mult).numpy().astype(np.float32)
        if p.int8_grid:
            return Palette(name=p.name, shape=p.shape, codebook=p.codebook, indices=p.indices,
                           group_size=p.group_size, scale=new)
        return Palette(name=p.name, shape=p.shape, codebook=new, indices=p.indices, group_size=p.group_size)


def tune_palettes(
    dense_model: Any,
    palettized_model: Any,
    palettes: dict[str, Palette],
    inputs: Any,
    *,
    epochs: int,
    lr: float,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Palette], TuneReport]:
    """Tuned copies of ``palettes`` (same indices, same integer codes) and a `TuneReport`.

    ``palettized_model`` carries the decoded ``palettes`` as its parameters (named as the keys);
    its weights are left holding the tuned palettes' decode. ``dense_model`` gives the targets.
    """
    import torch

    from pipeline.palettize.sensitivity import OutputKind, _looks_like_logits, distortion, first_tensor

    x = _as_tensor(inputs)
    if len(x) < MIN_TUNE_INPUTS:
        raise ConfigError(
            f"tuning needs at least {MIN_TUNE_INPUTS} inputs (got {len(x)})",
            next_step="Give more calibration inputs (CLI: --calibration N), or set tune_epochs 0.",
            field="tune_epochs",
        )
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)
    n_hold = max(min(TUNE_BATCH, len(x) // 2), round(HOLDOUT_FRACTION * len(x)))
    x_hold, x_train = x[order[:n_hold]], x[order[n_hold:]]
    t_hold, t_train = _outputs(dense_model, x_hold), _outputs(dense_model, x_train)
    kind = getattr(dense_model, "output_kind", None)
    classifier = (str(getattr(kind, "value", kind)) == OutputKind.CLASSIFIER.value) if kind is not None else (
        t_train.ndim == 2 and t_train.shape[1] > 1 and _looks_like_logits(dense_model, t_train))

    params = dict(palettized_model.named_parameters(remove_duplicate=False))
    items = [_Tunable(p, params[n]) for n, p in palettes.items()]
    every = list(palettized_model.parameters())
    flags = [p.requires_grad for p in every]
    was_training = getattr(palettized_model, "training", False)

    def held_loss() -> float:
        return float(distortion(t_hold, _outputs(palettized_model, x_hold), classifier))

    best = held_loss()
    before = best
    best_mult = [it.mult.detach().clone() for it in items]
    kept = 0
    opt = torch.optim.Adam([it.mult for it in items], lr=lr)
    steps_per_epoch = math.ceil(len(x_train) / TUNE_BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    try:
        palettized_model.eval()
        for p in every:  # a deep-copied ScriptModule's parameters are clones (not leaves): left as they are
            if p.is_leaf:
                p.requires_grad_(False)
        for it in items:
            if it.param.is_leaf:
                it.param.requires_grad_(True)
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(len(x_train), generator=gen)
            for s, i in enumerate(range(0, len(x_train), TUNE_BATCH)):
                b = perm[i:i + TUNE_BATCH]
                out = first_tensor(palettized_model(x_train[b])).double()
                loss = distortion(t_train[b], out, classifier)
                grads = torch.autograd.grad(loss, [it.param for it in items], allow_unused=True)
                opt.zero_grad()
                for it, g in zip(items, grads, strict=True):
                    it.backward_from(g)
                opt.step()
                sched.step()
                for it in items:
                    it.write()
                if progress:
                    progress((epoch - 1) * steps_per_epoch + s + 1, epochs * steps_per_epoch)
            loss = held_loss()
            if loss < best:
                best, kept = loss, epoch
                best_mult = [it.mult.detach().clone() for it in items]
    finally:
        for p, f in zip(every, flags, strict=True):
            if p.is_leaf:
                p.requires_grad_(f)
        palettized_model.train(was_training)
    tuned = {}
    for it, m in zip(items, best_mult, strict=True):
        pal = it.palette(m)
        tuned[pal.name] = pal
        with torch.no_grad():
            it.param.copy_(torch.from_numpy(pal.decode()).to(it.param.dtype))
    report = TuneReport(inputs=len(x_train), held_back=n_hold, loss_before=before, loss_after=best,
                        epoch_kept=kept, epochs=epochs, classifier=bool(classifier))
    return tuned, report
