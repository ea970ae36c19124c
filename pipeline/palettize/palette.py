"""`Palette`: one clustered weight tensor (codebook + uint8 indices), and its file format.

A palette is what the exporters turn into Cast->Gather graphs (``palette`` mode) or standard
per-channel int8 weights (``palette-int8`` mode, when made with ``int8_grid``). Many palettes
save to one safetensors file; the resolved `PalettizeConfig` and each palette's shape and group
size travel in the file's metadata, so a file is self-describing and round-trips exactly.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError, OutputError
from pipeline.palettize.config import PalettizeConfig

FILE_FORMAT = "pipeline.palettize/palettes"
FILE_VERSION = "1"


@dataclass
class Palette:
    """A weight as ``codebook[group_of_channel[c], indices[c, ...]] (* scale[c])``.

    Axis 0 of ``shape`` is the output channel axis (Linear ``[out, in]``, Conv2d
    ``[out, in/groups, kh, kw]``). ``codebook`` has one row per channel group (one row for
    per-tensor palettes); rows with fewer distinct centroids than columns repeat their last one.
    With ``int8_grid`` the codebook holds integers in [-127, 127] and ``scale`` the per-channel
    scale, so the same numbers are standard symmetric int8 weights.
    """

    name: str
    shape: tuple[int, ...]
    codebook: np.ndarray  # float32 (n_groups, k)
    indices: np.ndarray  # uint8, shape == self.shape
    group_size: int | None = None
    scale: np.ndarray | None = None  # float32 (out_channels,), int8_grid only

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        self.codebook = np.asarray(self.codebook, dtype=np.float32)
        self.indices = np.asarray(self.indices)
        if self.scale is not None:
            self.scale = np.asarray(self.scale, dtype=np.float32)
        problem = self._problem()
        if problem:
            raise DataError(f"palette {self.name!r} is inconsistent: {problem}",
                            next_step="Re-create the palettes with python -m pipeline.palettize.")

    def _problem(self) -> str | None:
        if len(self.shape) < 1:
            return "a palette needs at least one dimension"
        if self.codebook.ndim != 2 or not 1 <= self.codebook.shape[1] <= 256:
            return f"codebook shape {self.codebook.shape} is not (n_groups, k<=256)"
        if self.indices.dtype != np.uint8:
            return f"indices are {self.indices.dtype}, not uint8"
        if tuple(self.indices.shape) != self.shape:
            return f"indices shape {self.indices.shape} differs from the weight shape {self.shape}"
        if self.indices.size and int(self.indices.max()) >= self.k:
            return f"an index ({int(self.indices.max())}) is >= the codebook width {self.k}"
        expected = 1 if self.group_size is None else math.ceil(self.out_channels / self.group_size)
        if self.codebook.shape[0] != expected:
            return f"codebook has {self.codebook.shape[0]} rows, expected {expected}"
        if self.scale is not None and self.scale.shape != (self.out_channels,):
            return f"scale shape {self.scale.shape} is not ({self.out_channels},)"
        return None

    # ---------------------------------------------------------------------------------------

    @property
    def k(self) -> int:
        return int(self.codebook.shape[1])

    @property
    def n_groups(self) -> int:
        return int(self.codebook.shape[0])

    @property
    def out_channels(self) -> int:
        return int(self.shape[0])

    @property
    def int8_grid(self) -> bool:
        return self.scale is not None

    @property
    def index_bits(self) -> int:
        """Bits per index when packed: ceil(log2 k), at least 1."""
        return max(1, math.ceil(math.log2(self.k)))

    def group_of_channel(self) -> np.ndarray:
        """Row of the codebook used by each output channel."""
        channels = np.arange(self.out_channels)
        if self.group_size is None:
            return np.zeros_like(channels)
        return channels // self.group_size

    def _codes(self) -> np.ndarray:
        idx = self.indices.reshape(self.out_channels, -1).astype(np.intp)
        return self.codebook[self.group_of_channel()[:, None], idx]

    def decode(self) -> np.ndarray:
        """The float32 weight this palette stands for (bit-exact with the exporters' decode)."""
        vals = self._codes()
        if self.scale is not None:
            vals = vals * self.scale[:, None]
        return vals.astype(np.float32, copy=False).reshape(self.shape)

    def int8_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(int8 weights of ``shape``, float32 scale per output channel); int8_grid palettes only."""
        if self.scale is None:
            raise DataError(
                f"palette {self.name!r} was not made on the int8 grid",
                next_step="Palettize with int8_grid=True (CLI: --int8-grid) for palette-int8 export.",
            )
        return self._codes().astype(np.int8).reshape(self.shape), self.scale.copy()

    def _used_values(self) -> np.ndarray:
        """Decoded values the indices use, one row per codebook row (per channel with int8_grid);
        unused slots are NaN."""
        k = self.k
        idx = self.indices.reshape(self.out_channels, -1).astype(np.int64)
        if self.scale is not None:  # the scale differs per channel: look at each channel
            flags = np.zeros((self.out_channels, k), dtype=bool)
            flags[np.arange(self.out_channels)[:, None], idx] = True
            vals = self.codebook[self.group_of_channel()] * self.scale[:, None]
        else:
            groups = self.group_of_channel()
            flags = np.bincount((groups[:, None] * k + idx).ravel(), minlength=self.n_groups * k) > 0
            flags = flags.reshape(self.n_groups, k)
            vals = self.codebook
        return np.where(flags, vals, np.nan).astype(np.float32)

    def distinct_values(self) -> int:
        """Distinct values in the decoded tensor."""
        vals = self._used_values()
        return int(np.unique(vals[~np.isnan(vals)]).size)

    def max_distinct_per_group(self) -> int:
        """Most distinct values that one codebook row (one channel, with int8_grid) decodes to."""
        vals = np.sort(self._used_values(), axis=1)  # NaNs sort last
        new = np.ones(vals.shape, dtype=bool)
        new[:, 1:] = vals[:, 1:] != vals[:, :-1]
        return int((new & ~np.isnan(vals)).sum(axis=1).max())


# ------------------------------------------------------------------------------------------------
# file format


def save_palettes(path: str | Path, palettes: dict[str, Palette], config: PalettizeConfig | None = None) -> Path:
    """Write all palettes to one safetensors file (temp name + rename: never half-written)."""
    from safetensors.numpy import save

    path = Path(path)
    tensors: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}
    for name, pal in palettes.items():
        tensors[f"{name}::codebook"] = np.ascontiguousarray(pal.codebook)
        tensors[f"{name}::indices"] = np.ascontiguousarray(pal.indices)
        if pal.scale is not None:
            tensors[f"{name}::scale"] = np.ascontiguousarray(pal.scale)
        info[name] = {"shape": list(pal.shape), "group_size": pal.group_size, "k": pal.k}
    metadata = {
        "format": FILE_FORMAT,
        "format_version": FILE_VERSION,
        "palettes": json.dumps(info),
        "config": config.to_json() if config is not None else "null",
    }
    data = save(tensors, metadata=metadata)
    _atomic_write(path, data)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}",
                          next_step="Choose a folder you can write to.", path=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {err.strerror or err}",
                          next_step="Check free space and permissions.", path=str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    hint = "Re-create it with python -m pipeline.palettize --out DIR."
    if not path.is_file():
        raise DataError(f"palettes file {path} does not exist", next_step=hint, path=str(path))
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except Exception as err:  # safetensors raises several types for broken files
        raise DataError(f"palettes file {path} is not a readable safetensors file ({err})",
                        next_step=hint, path=str(path)) from None
    if meta.get("format") != FILE_FORMAT:
        raise DataError(f"{path} is a safetensors file but not a palettes file "
                        f"(format {meta.get('format')!r})", next_step=hint, path=str(path))
    if meta.get("format_version") != FILE_VERSION:
        raise DataError(f"palettes file {path} has format version {meta.get('format_version')!r}; "
                        f"this tool reads version {FILE_VERSION}", next_step=hint, path=str(path))
    return tensors, meta


def load_palettes(path: str | Path) -> dict[str, Palette]:
    """Read a file written by `save_palettes` (order of names preserved as written)."""
    tensors, meta = _read(path)
    info = json.loads(meta["palettes"])
    out: dict[str, Palette] = {}
    for name, item in info.items():
        try:
            out[name] = Palette(
                name=name,
                shape=tuple(item["shape"]),
                codebook=tensors[f"{name}::codebook"],
                indices=tensors[f"{name}::indices"],
                group_size=item["group_size"],
                scale=tensors.get(f"{name}::scale"),
            )
        except KeyError as err:
            raise DataError(f"palettes file {path} lacks tensor {err} of {name!r}",
                            next_step="Re-create it with python -m pipeline.palettize.") from None
    return out


def load_palette_config(path: str | Path) -> PalettizeConfig | None:
    """The resolved config saved with the palettes (None if none was saved)."""
    _, meta = _read(path)
    data = json.loads(meta.get("config", "null"))
    return None if data is None else PalettizeConfig.from_dict(data)
