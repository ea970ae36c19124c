"""The palettization report: a per-tensor table with sizes and signal-to-noise, and totals.

A report, not a log (STYLE.md item 4): every clustered tensor gets one row with its shape,
clusters, distinct values, bytes dense (fp32) / with 8-bit indices / with packed
``ceil(log2 k)``-bit indices (codebooks, and int8 scales, included), and the SQNR in dB;
tensors left dense are listed with the reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.palettize.palette import Palette


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(signal power / error power); +inf when the approximation is exact."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    err = ref - np.asarray(approx, dtype=np.float64).ravel()
    noise = float(np.square(err).sum())  # not np.dot: BLAS threads crawl on a busy machine
    signal = float(np.square(ref).sum())
    return _sqnr(signal, noise)


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


@dataclass
class TensorReport:
    name: str
    shape: tuple[int, ...]
    clusters: int  # configured clusters for this tensor (the codebook width)
    distinct_values: int  # in the decoded tensor
    max_distinct_per_group: int  # per codebook row (per channel with int8_grid)
    n_groups: int
    int8_grid: bool
    bytes_dense: int  # fp32
    bytes_indices_8bit: int  # uint8 indices + codebook (+ int8 scales)
    bytes_packed: int  # ceil(log2 k)-bit indices, packed + codebook (+ scales)
    sqnr_db: float
    signal_power: float = 0.0  # sum of squares of the dense weight (for the total SQNR)
    noise_power: float = 0.0
    seconds: float = 0.0

    @classmethod
    def build(cls, palette: Palette, dense: np.ndarray, decoded: np.ndarray, seconds: float) -> TensorReport:
        numel = int(np.prod(palette.shape))
        if palette.int8_grid:  # int8 codebook entries + one fp32 scale per output channel
            side = palette.n_groups * palette.k + 4 * palette.out_channels
        else:
            side = 4 * palette.n_groups * palette.k
        ref = dense.astype(np.float64).ravel()
        err = ref - decoded.astype(np.float64).ravel()
        signal, noise = float(np.square(ref).sum()), float(np.square(err).sum())
        return cls(
            name=palette.name,
            shape=tuple(palette.shape),
            clusters=palette.k,
            distinct_values=palette.distinct_values(),
            max_distinct_per_group=palette.max_distinct_per_group(),
            n_groups=palette.n_groups,
            int8_grid=palette.int8_grid,
            bytes_dense=4 * numel,
            bytes_indices_8bit=numel + side,
            bytes_packed=math.ceil(numel * palette.index_bits / 8) + side,
            sqnr_db=_sqnr(signal, noise),
            signal_power=signal,
            noise_power=noise,
            seconds=seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["sqnr_db"] = _json_float(self.sqnr_db)
        return d


def _json_float(x: float) -> float | None:
    """JSON has no infinity: an exact tensor's SQNR is written as null."""
    return None if not math.isfinite(x) else round(x, 4)


@dataclass
class Report:
    tensors: list[TensorReport]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why it stayed dense)
    model_params: int = 0  # every parameter of the model, clustered or not
    seconds: float = 0.0

    def totals(self) -> dict[str, Any]:
        dense = sum(t.bytes_dense for t in self.tensors)
        b8 = sum(t.bytes_indices_8bit for t in self.tensors)
        packed = sum(t.bytes_packed for t in self.tensors)
        signal = sum(t.signal_power for t in self.tensors)
        noise = sum(t.noise_power for t in self.tensors)
        clustered_params = dense // 4
        other_bytes = 4 * max(0, self.model_params - clustered_params)
        return {
            "tensors_clustered": len(self.tensors),
            "tensors_skipped": len(self.skipped),
            "params_clustered": clustered_params,
            "params_total": self.model_params,
            "bytes_dense": dense,
            "bytes_indices_8bit": b8,
            "bytes_packed": packed,
            "compression_8bit": round(dense / b8, 4) if b8 else None,
            "compression_packed": round(dense / packed, 4) if packed else None,
            "model_bytes_dense": 4 * self.model_params,
            "model_bytes_packed": packed + other_bytes,
            "sqnr_db": _json_float(10 * math.log10(signal / noise)) if noise > 0 and signal > 0 else None,
            "min_sqnr_db": _json_float(min((t.sqnr_db for t in self.tensors), default=math.inf)),
            "seconds": round(self.seconds, 4),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensors": [t.to_dict() for t in self.tensors],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "totals": self.totals(),
        }

    def table(self, title: str = "Palettization report"):
        """A rich Table (import rich only when drawing)."""
        from rich.table import Table

        table = Table(title=title, show_footer=True)
        tot = self.totals()
        table.add_column("tensor", footer=f"{tot['tensors_clustered']} clustered")
        table.add_column("shape")
        table.add_column("k", justify="right")
        table.add_column("distinct", justify="right")
        table.add_column("dense", justify="right", footer=_size(tot["bytes_dense"]))
        table.add_column("8-bit idx", justify="right", footer=_size(tot["bytes_indices_8bit"]))
        table.add_column("packed", justify="right", footer=_size(tot["bytes_packed"]))
        table.add_column("SQNR dB", justify="right",
                         footer="" if tot["sqnr_db"] is None else f"{tot['sqnr_db']:.1f}")
        for t in self.tensors:
            groups = f" ({t.n_groups}g)" if t.n_groups > 1 else ""
            table.add_row(
                t.name, "x".join(map(str, t.shape)), f"{t.clusters}{groups}", str(t.distinct_values),
                _size(t.bytes_dense), _size(t.bytes_indices_8bit), _size(t.bytes_packed),
                "exact" if math.isinf(t.sqnr_db) else f"{t.sqnr_db:.1f}",
            )
        return table

    def render(self, console=None) -> None:
        from rich.console import Console

        console = console or Console()
        console.print(self.table())
        if self.skipped:
            shown = ", ".join(f"{n} ({r})" for n, r in self.skipped[:8])
            more = f" and {len(self.skipped) - 8} more" if len(self.skipped) > 8 else ""
            console.print(f"left dense: {shown}{more}")
        tot = self.totals()
        console.print(
            f"clustered weights: {_size(tot['bytes_dense'])} fp32 -> {_size(tot['bytes_packed'])} packed "
            f"({tot['compression_packed']}x), {_size(tot['bytes_indices_8bit'])} with 8-bit indices "
            f"({tot['compression_8bit']}x); whole model {_size(tot['model_bytes_dense'])} -> "
            f"{_size(tot['model_bytes_packed'])}; {tot['seconds']:.2f} s"
        )


def _size(n: int) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"
