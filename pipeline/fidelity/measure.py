"""Run a model dense and in several compressed configurations, and tabulate what each keeps.

A configuration (`Variant`) is one of: the dense model; int8 per-channel round-to-nearest (the
reference every palette is held against: 8 bits per weight plus a 32-bit scale per output
channel); a palette with a fixed cluster count (per tensor or grouped, optionally with
sensitivity-weighted k-means); or a budgeted palette (per-layer cluster counts and granularity
chosen under a target average of bits per weight, codebooks included). Every compressed variant
touches exactly the same tensors (the palettizer's selection), so bits per weight compare.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.fidelity.metrics import compare, task_of
from pipeline.palettize.config import Assignment, Granularity, PalettizeConfig
from pipeline.palettize.sensitivity import SensitivityMethod

if TYPE_CHECKING:
    from pipeline.fidelity.data import FidelityData
    from pipeline.sources import LoadedModel

Log = Callable[[str], None]


class Method(str, Enum):  # noqa: UP042 - str enums by house style
    DENSE = "dense"
    INT8 = "int8-per-channel"
    PALETTE = "palette"
    BUDGET = "budget"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration to measure; checked when built."""

    method: Method
    clusters: int | None = None
    granularity: Granularity = Granularity.PER_TENSOR
    group_size: int | None = None
    sensitivity: SensitivityMethod = SensitivityMethod.NONE
    target_bits: float | None = None
    int8_grid: bool = False  # centroids on each output channel's int8 grid (palette-int8 export)
    algorithm: str | None = None  # k-means for this variant ("optimal" | "lloyd"); None: the base config's
    assignment: Assignment = Assignment.NEAREST
    tune_epochs: int = 0  # end-to-end tuning of scales / codebooks (`pipeline.palettize.tune`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
        object.__setattr__(self, "granularity", Granularity(self.granularity))
        object.__setattr__(self, "sensitivity", SensitivityMethod(self.sensitivity))
        object.__setattr__(self, "assignment", Assignment(self.assignment))
        if self.method is Method.PALETTE and self.clusters is None:
            raise ConfigError("a palette variant needs clusters", field="clusters")
        if self.method is Method.BUDGET and (self.target_bits is None or self.target_bits <= 0):
            raise ConfigError("a budget variant needs a positive target_bits", field="target_bits")

    @property
    def label(self) -> str:
        if self.method is Method.DENSE:
            return "dense"
        if self.method is Method.INT8:
            return "int8 per-channel"
        sens = "" if self.sensitivity is SensitivityMethod.NONE else f" +{self.sensitivity.value}"
        sens += " int8-grid" if self.int8_grid else ""
        sens += " gptq" if self.assignment is Assignment.GPTQ else ""
        sens += f" tuned x{self.tune_epochs}" if self.tune_epochs else ""
        sens += f" ({self.algorithm})" if self.algorithm else ""
        if self.method is Method.BUDGET:
            return f"budget <={self.target_bits:g} bits{sens}"
        gran = "per-tensor" if self.granularity is Granularity.PER_TENSOR else f"grouped g{self.group_size}"
        return f"k={self.clusters} {gran}{sens}"

    def palettize_config(self, base: PalettizeConfig) -> PalettizeConfig:
        if self.algorithm is not None:
            base = dataclasses.replace(base, algorithm=self.algorithm)
        base = dataclasses.replace(base, sensitivity=self.sensitivity, assignment=self.assignment,
                                   int8_grid=self.int8_grid, tune_epochs=self.tune_epochs)
        if self.method is Method.BUDGET:
            return dataclasses.replace(base, granularity=Granularity.PER_TENSOR, group_size=None,
                                       target_bits=float(self.target_bits))
        return dataclasses.replace(base, clusters=int(self.clusters), granularity=self.granularity,
                                   group_size=self.group_size, target_bits=None)


def predict(module: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """float64 outputs of a torch module on ``x`` (dtype kept: token ids stay integers)."""
    import torch

    from pipeline.palettize.sensitivity import first_tensor

    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = first_tensor(module(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size]))))
            outs.append(out.detach().double().cpu().numpy())
    return np.concatenate(outs)


def clustered_weights(model: Any, config: PalettizeConfig) -> dict[str, np.ndarray]:
    """The float weights the palettizer would cluster with ``config`` (same selection and threshold)."""
    from pipeline.palettize.apply import select_weights

    chosen, _ = select_weights(model, config)
    out = {}
    for name, param in chosen:
        resolved = config.resolve(name)
        if resolved is not None and param.numel() >= resolved.weight_threshold and param.is_floating_point():
            out[name] = param.detach().float().cpu().numpy()
    return out


def int8_per_channel(model: Any, names: Sequence[str]) -> tuple[Any, float]:
    """A copy of ``model`` with the named weights rounded to symmetric per-output-channel int8, and
    its bits per weight (8 per value + a 32-bit scale per output channel)."""
    import copy

    import torch

    new = copy.deepcopy(model)
    params = dict(new.named_parameters(remove_duplicate=False))
    bits = numel = 0
    with torch.no_grad():
        for name in names:
            p = params[name]
            w = p.detach().float().reshape(p.shape[0], -1)
            scale = w.abs().amax(dim=1, keepdim=True) / 127.0
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.clamp(torch.round(w / safe), -127, 127) * scale
            p.copy_(q.reshape(p.shape).to(p.dtype))
            bits += 8 * w.numel() + 32 * w.shape[0]
            numel += w.numel()
    return new, bits / numel if numel else math.nan


@dataclasses.dataclass
class Row:
    variant: Variant
    bits_per_weight: float
    metrics: dict[str, Any]
    seconds: float
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.variant.label, "method": self.variant.method.value,
                "bits_per_weight": self.bits_per_weight, "seconds": self.seconds, "notes": self.notes,
                **self.metrics}


def run_fidelity(
    loaded: LoadedModel,
    data: FidelityData,
    variants: Sequence[Variant],
    *,
    base: PalettizeConfig | None = None,
    log: Log | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> tuple[str, list[Row]]:
    """Measure every variant on ``data``; returns (task, rows). Sensitivities are estimated once
    per method on the calibration batch and shared between variants."""
    from pipeline.palettize.apply import bits_per_weight, palettize
    from pipeline.palettize.sensitivity import OutputKind, estimate_sensitivity

    base = PalettizeConfig() if base is None else base
    say = log or (lambda _m: None)
    module = loaded.module
    t0 = time.perf_counter()
    ref = predict(module, data.x)
    task = task_of(loaded, ref)
    say(f"dense outputs {ref.shape} in {time.perf_counter() - t0:.1f} s; task: {task}")
    weights = clustered_weights(module, base)
    if not weights:
        raise ConfigError("no weights of this model are selected for palettization",
                          next_step="Lower --weight-threshold or widen the module types.")
    kind = OutputKind.CLASSIFIER if task == "classifier" else OutputKind.DENSE
    sens_cache: dict[SensitivityMethod, dict[str, np.ndarray]] = {}

    def sensitivities(method: SensitivityMethod) -> dict[str, np.ndarray] | None:
        if method is SensitivityMethod.NONE:
            return None
        if method not in sens_cache:
            t = time.perf_counter()
            sens_cache[method] = estimate_sensitivity(module, data.calibration, list(weights), method=method,
                                                      output_kind=kind)
            say(f"{method.value} sensitivities from {len(data.calibration)} calibration inputs in "
                f"{time.perf_counter() - t:.1f} s")
        return sens_cache[method]

    rows: list[Row] = []
    for v in variants:
        t = time.perf_counter()
        notes = ""
        if v.method is Method.DENSE:
            out, bpw = ref, 32.0
        elif v.method is Method.INT8:
            model, bpw = int8_per_channel(module, list(weights))
            out = predict(model, data.x)
        else:
            result = palettize(module, v.palettize_config(base), calibration=data.calibration,
                               sample_weights=sensitivities(v.sensitivity), tuning=data.tuning)
            if result.budget is not None:
                hist = result.budget.histogram()
                notes = ", ".join(f"{k}:{n}" for k, n in sorted(hist.items(), key=lambda kv: -kv[1])[:4])
            if result.tune is not None:
                t_ = result.tune
                notes = ", ".join(x for x in (notes, f"tune loss {t_.loss_before:.3g}->{t_.loss_after:.3g} "
                                              f"(epoch {t_.epoch_kept})") if x)
            bpw = bits_per_weight(result.palettes)
            out = predict(result.model, data.x)
        metrics = compare(ref, out, task, data.y)
        row = Row(v, float(bpw), metrics, time.perf_counter() - t, notes)
        rows.append(row)
        if on_row:
            on_row(row)
        say(f"{v.label}: {bpw:.3f} bits/weight, {time.perf_counter() - t:.1f} s")
    return task, rows


def columns_for(task: str, labelled: bool) -> list[tuple[str, str, str]]:
    """(metric key, header, format) of the table for this kind of output."""
    cols = [("bits_per_weight", "bits/weight", "{:.3f}")]
    if task == "classifier":
        cols += [("top1_agreement", "top-1 agree", "{:.4f}"), ("top5_agreement", "top-5 agree", "{:.4f}")]
        if labelled:
            cols += [("accuracy", "accuracy", "{:.4f}")]
    elif task == "encoder":
        cols += [("cosine_mean", "cosine", "{:.5f}"), ("cosine_min", "cosine min", "{:.5f}"),
                 ("nn_agreement", "NN agree", "{:.4f}")]
    else:
        cols += [("correlation_mean", "correlation", "{:.5f}"), ("correlation_min", "corr min", "{:.5f}")]
    return cols


def format_table(task: str, rows: Sequence[Row], labelled: bool) -> str:
    """A plain-text table (what the CLI and the benchmark print)."""
    cols = columns_for(task, labelled)
    header = ["config"] + [h for _, h, _ in cols] + ["notes"]
    body = []
    for r in rows:
        d = r.to_dict()
        body.append([r.variant.label] + [fmt.format(d[k]) if isinstance(d.get(k), (int, float)) else "-"
                                         for k, _, fmt in cols] + [r.notes])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
