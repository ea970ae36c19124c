"""`PalettizeConfig`: one validated object that says how to palettize a model.

Why one frozen dataclass checked at construction (coremltools' ``OpPalettizerConfig`` style): a
wrong value fails before any work starts, with a message naming the field and the allowed values;
the same object is saved, resolved, beside every palette file and in every report, so a result
can always be traced back to the settings that made it.

Selection is layered (STYLE.md item 3): the global settings apply to every weight of the chosen
module types; ``include``/``exclude`` regexes narrow that down; ``overrides`` then maps a regex to
per-layer changes (``{"clusters": 128}``) or to ``None`` ("leave this layer dense"). The first
override whose pattern matches a parameter name wins.

Fidelity settings (they need calibration inputs, passed to `palettize`): ``sensitivity`` weights
every value in the k-means by an importance estimate; ``assignment="gptq"`` picks centroids with
error feedback and refits the codebook (`pipeline.palettize.gptq`); ``target_bits`` replaces the
single cluster count by a per-layer budget (`pipeline.palettize.budget`), which `palettize` turns
into exact-name ``overrides`` of the config it returns, so a saved config rebuilds the same layout.
``tune_epochs`` then tunes the palettes' scales (int8 grid) or codebooks end to end on calibration
inputs, every index kept (`pipeline.palettize.tune`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

MIN_CLUSTERS = 2
MAX_CLUSTERS = 256  # indices are stored as uint8


class Granularity(str, Enum):  # noqa: UP042 - str enums by house style (STYLE.md 1)
    PER_TENSOR = "per_tensor"
    PER_CHANNEL_GROUP = "per_channel_group"


class Init(str, Enum):  # noqa: UP042
    """Starting centroids for Lloyd's algorithm (the optimal solver needs none)."""

    KMEANS_PP = "kmeans++"
    LINEAR = "linear"
    DENSITY = "density"
    QUANTILE = "quantile"


class Algorithm(str, Enum):  # noqa: UP042
    OPTIMAL = "optimal"  # exact 1-D k-means by dynamic programming
    LLOYD = "lloyd"  # Lloyd's iteration from `init` (what most tools do)


class Sensitivity(str, Enum):  # noqa: UP042
    """Per-value k-means weights estimated on calibration inputs (`pipeline.palettize.sensitivity`)."""

    NONE = "none"
    FISHER = "fisher"  # diagonal Fisher information of the output
    ACTIVATION = "activation"  # E[x**2] of the input each weight multiplies
    OUTPUT = "output"  # activation, scaled per layer to the output error it was measured to cause


class Assignment(str, Enum):  # noqa: UP042
    """How weights pick their centroid once the codebook is made."""

    NEAREST = "nearest"  # each value its nearest centroid
    GPTQ = "gptq"  # column by column with error feedback, then a codebook refit (`palettize.gptq`)


#: fields an entry of ``overrides`` may change for the layers its pattern matches
OVERRIDABLE = ("clusters", "granularity", "group_size", "init", "algorithm", "int8_grid", "assignment")


def _allowed(enum: type[Enum]) -> str:
    return ", ".join(repr(m.value) for m in enum)


def _enum(field: str, enum: type[Enum], value: Any) -> Enum:
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        raise ConfigError(
            f"{field} must be one of {_allowed(enum)} (got {value!r})",
            next_step=f"Set {field} to one of those values.",
            field=field,
            value=value,
        ) from None


def _int(field: str, value: Any, lo: int, hi: int | None, why: str = "") -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise ConfigError(
            f"{field} must be an integer {span}{why} (got {value!r})",
            next_step=f"Set {field} to an integer {span}.",
            field=field,
            value=value,
        )
    return value


def _number(field: str, value: Any, ok: Any, what: str, next_step: str) -> float:
    """``value`` as a float when it is a finite real number that ``ok`` accepts, else a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"{field} must be {what} (got {value!r})", next_step=next_step, field=field, value=value)
    return float(value)


def _patterns(field: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
        raise ConfigError(
            f"{field} must be a list of regular expressions matched against parameter names "
            f"(got {value!r})",
            next_step=f"Give {field} as a list of strings, e.g. ['blocks\\.0\\.'].",
            field=field,
        )
    for p in value:
        try:
            re.compile(p)
        except re.error as err:
            raise ConfigError(
                f"{field} pattern {p!r} is not a valid regular expression: {err}",
                next_step="Fix the pattern (Python `re` syntax).",
                field=field,
            ) from None
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class PalettizeConfig:
    """How to palettize: see the module docstring; every field is checked when built."""

    clusters: int = 64
    granularity: Granularity = Granularity.PER_TENSOR
    group_size: int | None = None  # output channels per codebook, with per_channel_group
    init: Init = Init.KMEANS_PP
    algorithm: Algorithm = Algorithm.OPTIMAL
    weight_threshold: int = 2048  # tensors with fewer elements stay dense
    module_types: tuple[str, ...] = ("Linear", "Conv2d")
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    int8_grid: bool = False
    seed: int = 0
    sensitivity: Sensitivity = Sensitivity.NONE
    assignment: Assignment = Assignment.NEAREST
    target_bits: float | None = None  # per-layer cluster budget under this average (codebooks in)
    tune_epochs: int = 0  # end-to-end tuning of scales / codebooks after clustering (`palettize.tune`)
    tune_lr: float = 1e-3  # Adam's learning rate on the tuned multipliers
    overrides: tuple[tuple[str, tuple[tuple[str, Any], ...] | None], ...] = ()

    @property
    def needs_calibration(self) -> bool:
        """Whether palettizing with this config needs calibration inputs (a layer override may
        also ask for GPTQ; `palettize` checks that per layer)."""
        return self.sensitivity is not Sensitivity.NONE or self.assignment is Assignment.GPTQ or (
            self.tune_epochs > 0) or any(
            s is not None and dict(s).get("assignment") in (Assignment.GPTQ, Assignment.GPTQ.value)
            for _, s in self.overrides)

    def __post_init__(self) -> None:
        put = object.__setattr__
        _int("clusters", self.clusters, MIN_CLUSTERS, MAX_CLUSTERS, " (indices are stored as uint8)")
        put(self, "granularity", _enum("granularity", Granularity, self.granularity))
        put(self, "init", _enum("init", Init, self.init))
        put(self, "algorithm", _enum("algorithm", Algorithm, self.algorithm))
        put(self, "sensitivity", _enum("sensitivity", Sensitivity, self.sensitivity))
        put(self, "assignment", _enum("assignment", Assignment, self.assignment))
        if self.target_bits is not None:
            put(self, "target_bits", _number(
                "target_bits", self.target_bits, lambda t: 1 <= t <= 16,
                "an average number of bits per weight from 1 to 16",
                "Set target_bits to e.g. 6, or leave it unset for one cluster count everywhere."))
        if self.granularity is Granularity.PER_CHANNEL_GROUP:
            if self.group_size is None:
                raise ConfigError(
                    "group_size is required with granularity 'per_channel_group'",
                    next_step="Set group_size to the number of output channels that share a codebook "
                    "(e.g. 16).",
                    field="group_size",
                )
            _int("group_size", self.group_size, 1, None)
        elif self.group_size is not None:
            raise ConfigError(
                f"group_size ({self.group_size!r}) only applies with granularity 'per_channel_group'",
                next_step="Remove group_size or set granularity to 'per_channel_group'.",
                field="group_size",
            )
        _int("weight_threshold", self.weight_threshold, 0, None)
        _int("tune_epochs", self.tune_epochs, 0, 1000)
        put(self, "tune_lr", _number("tune_lr", self.tune_lr, lambda lr: 0 < lr <= 1,
                                     "a learning rate above 0 and at most 1", "Set tune_lr to e.g. 0.001 (the default)."))
        _int("seed", self.seed, 0, None)
        if not isinstance(self.int8_grid, bool):
            raise ConfigError(
                f"int8_grid must be true or false (got {self.int8_grid!r})",
                next_step="Set int8_grid to true or false.",
                field="int8_grid",
            )
        types = self.module_types
        if isinstance(types, str):
            types = (types,)
        if not isinstance(types, (list, tuple)) or not types or not all(
            isinstance(t, str) and t for t in types
        ):
            raise ConfigError(
                f"module_types must be a non-empty list of module class names (got {self.module_types!r})",
                next_step="Use names such as 'Linear', 'Conv2d', 'Conv1d', 'Embedding'.",
                field="module_types",
            )
        put(self, "module_types", tuple(types))
        put(self, "include", _patterns("include", self.include))
        put(self, "exclude", _patterns("exclude", self.exclude))
        put(self, "overrides", self._check_overrides(self.overrides))

    # ---------------------------------------------------------------------------------------

    def _check_overrides(self, value: Any) -> tuple:
        items = list(value.items()) if isinstance(value, Mapping) else list(value or ())
        out = []
        for item in items:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise ConfigError(
                    f"overrides must map a regex to settings or to null (got entry {item!r})",
                    next_step="Write overrides as {'blocks\\.0\\.': {'clusters': 128}, 'head': null}.",
                    field="overrides",
                )
            pattern, settings = item
            _patterns("overrides", [pattern])
            if settings is None:
                out.append((pattern, None))
                continue
            settings = dict(settings)
            unknown = sorted(set(settings) - set(OVERRIDABLE))
            if unknown:
                raise ConfigError(
                    f"overrides[{pattern!r}] has unknown keys {unknown}; allowed: {', '.join(OVERRIDABLE)}",
                    next_step="Remove or rename those keys.",
                    field="overrides",
                )
            try:  # validate by building the config this override produces
                dataclasses.replace(self, overrides=(), **settings)
            except ConfigError as err:
                raise ConfigError(
                    f"overrides[{pattern!r}]: {err.message}", next_step=err.next_step, field="overrides"
                ) from None
            out.append((pattern, tuple(sorted(settings.items()))))
        return tuple(out)

    def resolve(self, name: str) -> PalettizeConfig | None:
        """The settings for parameter ``name``: the first matching override, or None to skip it."""
        for pattern, settings in self.overrides:
            if re.search(pattern, name):
                if settings is None:
                    return None
                return dataclasses.replace(self, overrides=(), **dict(settings))
        return self

    # ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML types, every field present (the *resolved* config)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Enum):
                v = v.value
            elif isinstance(v, tuple) and f.name != "overrides":
                v = list(v)
            out[f.name] = v
        out["overrides"] = {
            p: (None if s is None else {k: (v.value if isinstance(v, Enum) else v) for k, v in s})
            for p, s in self.overrides
        }
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PalettizeConfig:
        """Build from a mapping (YAML, JSON); unknown keys are an error, not silently ignored."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a palettize config must be a mapping of settings (got {type(data).__name__})",
                next_step="Write the config as 'key: value' lines.",
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown palettize config keys {unknown}; allowed: {', '.join(names)}",
                next_step="Remove or rename those keys.",
                field=unknown[0],
            )
        return cls(**dict(data))

    @classmethod
    def from_yaml(cls, path: str | Path) -> PalettizeConfig:
        import yaml

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(
                f"cannot read palettize config {path}: {err.strerror or err}",
                next_step="Check the --config path.",
                path=str(path),
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(
                f"palettize config {path} is not valid YAML: {err}", next_step="Fix the YAML syntax.",
                path=str(path),
            ) from None
        try:
            return cls.from_dict(data or {})
        except ConfigError as err:
            raise ConfigError(f"{path}: {err.message}", next_step=err.next_step, path=str(path)) from None
