"""The farm file of ``python -m pipeline.nightly``: which phones, and which jobs to run on each.

    phones:
      - {name: bench-1, address: 192.168.1.20:5555, profile: pixel, tags: [lab-a]}
      - {name: bench-2, address: R5CW20ABCDE}            # a USB serial
    matrix:
      models: [default]
      formats: [onnx, tflite]
      modes: [dense, palette, palette-int8]
      threads: [1, 4]
      dynamic: [full, [blocks.0.attn], "blocks.0.attn+blocks.1.mlp"]   # skip configurations (pipeline.dynamic)
    settings: {runs: 30, warmup: 5, min_duration_s: 1.0, cooldown_s: 2.0, clusters: 64}

Every phone runs every job of the matrix (phones x models x formats x modes x threads x dynamic),
so each configuration has a history per phone. ``sim:N`` stands for N simulated phones and the
default matrix. Unknown keys are rejected: a typo must not silently drop half of a night.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.palette_modes import PALETTE_SETTINGS, PaletteFields

FORMATS = ("onnx", "tflite")
MODES = ("dense", "palette", "palette-int8")
DEFAULT_SIM_PROFILE = "pixel-8"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
FULL = "full"   # the dynamic configuration that skips nothing (pipeline.dynamic.skip.config_key)


def dynamic_config_key(entry: Any, where: str = "matrix.dynamic") -> str:
    """One ``matrix.dynamic`` entry as its configuration key: ``"full"`` or sorted unit names joined by ``+``.

    An entry is a list of unit names or one ``"+"``-joined string; ``full``, ``""`` and ``[]`` skip
    nothing. Whether the units exist is checked against the model when the bundles are exported
    (:func:`pipeline.nightly.dynamic_bundles.check_configs`); here only their spelling. The same
    text as ``pipeline.dynamic.skip.config_key`` (not imported: that module needs torch).
    """
    if entry is None:
        names: list[Any] = []
    elif isinstance(entry, str):
        names = [n.strip() for n in entry.split("+")]
        names = [] if names in ([FULL], [""]) else names
    elif isinstance(entry, (list, tuple)):
        names = list(entry)
    else:
        raise ConfigError(f"{where}: entry {entry!r} is not a skip configuration",
                          next_step="Write each entry as a list of unit names ([blocks.0.attn, blocks.1.mlp]), "
                                    "a '+'-joined string (\"blocks.0.attn+blocks.1.mlp\") or 'full'.")
    bad = [n for n in names if not isinstance(n, str) or not _UNIT_RE.match(n) or n == FULL]
    if bad:
        raise ConfigError(f"{where}: {', '.join(map(repr, bad))} is not a skip unit name",
                          next_step="Use unit names such as blocks.0.attn or blocks.3.mlp "
                                    "(`python -m pipeline.dynamic --help` lists how to find them).")
    return "+".join(sorted(set(names))) or FULL


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {type(value).__name__}",
                          next_step=f"Write {where.split('.')[-1]}: [a, b].")
    return value


@dataclass(frozen=True)
class PhoneSpec:
    """One phone of the farm. ``address`` is ``host:port`` or a USB serial; ``sim`` phones have none."""

    name: str
    address: str | None
    profile: str | None = None
    tags: tuple[str, ...] = ()
    simulated: bool = False

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name or ""):
            raise ConfigError(f"phone name {self.name!r} is not allowed; use letters, digits, '.', '_' or '-' "
                              "(at most 64, starting with a letter or digit)")
        if self.address is None and not self.simulated:
            raise ConfigError(f"phone {self.name!r} has no address",
                              next_step="Add 'address: HOST:PORT' (adb over Wi-Fi) or 'address: USB_SERIAL'.")
        if self.profile is not None:
            from device_runner.profiles import PROFILES

            if self.profile not in PROFILES:
                raise ConfigError(f"phone {self.name!r}: unknown profile {self.profile!r}",
                                  next_step=f"Use one of: {', '.join(sorted(PROFILES))} (or leave it out to detect).")
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))

    @property
    def lease_id(self) -> str:
        """What the lease table is keyed by: the address (unique per phone across hosts), else the name."""
        return self.address or f"sim:{self.name}"

    @property
    def group(self) -> str:
        """Phones in one group can stand in for each other when one drops out."""
        return self.profile or "detect"


@dataclass(frozen=True)
class Matrix:
    models: tuple[str, ...] = ("default",)
    formats: tuple[str, ...] = FORMATS
    modes: tuple[str, ...] = MODES
    threads: tuple[int, ...] = (1,)
    dynamic: tuple[str, ...] = ()   # configuration keys ("full", "blocks.0.attn+blocks.1.mlp"); () = full only

    def __post_init__(self) -> None:
        def check(name: str, values: tuple, allowed: tuple | None) -> tuple:
            values = tuple(dict.fromkeys(values))
            if not values and name != "dynamic":
                raise ConfigError(f"matrix.{name} is empty; list at least one value")
            if allowed is not None:
                bad = [v for v in values if v not in allowed]
                if bad:
                    raise ConfigError(f"matrix.{name}: unknown value(s) {', '.join(map(str, bad))}; "
                                      f"allowed: {', '.join(allowed)}")
            return values

        object.__setattr__(self, "models", check("models", tuple(str(m) for m in self.models), None))
        object.__setattr__(self, "formats", check("formats", tuple(str(f) for f in self.formats), FORMATS))
        object.__setattr__(self, "modes", check("modes", tuple(str(m) for m in self.modes), MODES))
        object.__setattr__(self, "dynamic", check("dynamic", tuple(dynamic_config_key(d) for d in self.dynamic), None))
        threads = check("threads", tuple(self.threads), None)
        if not all(isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= 64 for t in threads):
            raise ConfigError(f"matrix.threads {list(threads)!r} is not allowed; use integers 1-64")
        object.__setattr__(self, "threads", threads)


#: the settings that are `DeployConfig` fields of the same name and meaning
DEPLOY_SETTINGS = ("eval_limit", *PALETTE_SETTINGS)


@dataclass(frozen=True)
class NightSettings(PaletteFields):
    """How each job is measured (the same meaning as in ``pipeline.deploy``); the fidelity settings
    (`PaletteFields`) decide the palettes of the full model and of every skip configuration."""

    runs: int = 30
    warmup: int = 5
    min_duration_s: float = 1.0
    cooldown_s: float = 2.0
    idle_baseline_s: float = 2.0
    clusters: int = 64
    job_timeout_s: float = 600.0
    thermal_timeout_s: float = 120.0
    battery_floor_pct: int = 20
    eval_limit: int | None = None

    def deploy_fields(self) -> dict[str, Any]:
        """The `DeployConfig` fields these settings set for a model's bundles."""
        return {name: getattr(self, name) for name in DEPLOY_SETTINGS}

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.runs, int) and self.runs >= 1, "runs", "an integer >= 1"),
            (isinstance(self.warmup, int) and self.warmup >= 0, "warmup", "an integer >= 0"),
            (self.min_duration_s >= 0, "min_duration_s", "seconds >= 0"),
            (self.cooldown_s >= 0, "cooldown_s", "seconds >= 0"),
            (self.idle_baseline_s >= 0, "idle_baseline_s", "seconds >= 0"),
            (isinstance(self.clusters, int) and 2 <= self.clusters <= 256, "clusters", "an integer 2-256"),
            (self.job_timeout_s > 0, "job_timeout_s", "seconds > 0"),
            (self.thermal_timeout_s >= 0, "thermal_timeout_s", "seconds >= 0"),
            (0 <= self.battery_floor_pct <= 100, "battery_floor_pct", "a percentage 0-100"),
            (self.eval_limit is None or self.eval_limit >= 1, "eval_limit", "an integer >= 1"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise ConfigError(f"settings.{name}={getattr(self, name)!r} is not allowed; use {allowed}")
        from pipeline.deploy_config import DeployConfig

        try:
            DeployConfig(**self.deploy_fields())
        except ConfigError as err:
            raise ConfigError(f"settings: {err.message}", next_step=err.next_step) from None


@dataclass(frozen=True)
class Job:
    """One measurement of a night: a configuration on a (home) phone."""

    phone: str          # home phone name
    group: str          # phones that may stand in (same profile)
    model: str
    format: str
    mode: str
    threads: int
    dynamic: str | None = None   # skip configuration key; None = the full model (the key of older nights)

    def __post_init__(self) -> None:
        if self.dynamic == FULL:   # the full model keeps the job key it had before dynamic configurations
            object.__setattr__(self, "dynamic", None)

    @property
    def bundle_key(self) -> tuple[str, ...]:
        """Which bundle the job runs: (model, format, mode), plus the configuration for a dynamic one."""
        base = (self.model, self.format, self.mode)
        return base if self.dynamic is None else (*base, self.dynamic)

    @property
    def key(self) -> str:
        """Stable id of the job (the same in every night): 12 hex digits."""
        text = json.dumps([self.phone, self.model, self.format, self.mode, self.threads, self.dynamic])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def label(self) -> str:
        dyn = f" dyn={self.dynamic}" if self.dynamic else ""
        return f"{self.phone} {self.model} {self.format}/{self.mode} t{self.threads}{dyn}"


@dataclass(frozen=True)
class FarmConfig:
    phones: tuple[PhoneSpec, ...]
    matrix: Matrix = field(default_factory=Matrix)
    settings: NightSettings = field(default_factory=NightSettings)
    source: str = "farm"

    def __post_init__(self) -> None:
        if not self.phones:
            raise ConfigError(f"{self.source}: the farm lists no phones", next_step="Add at least one under 'phones:'.")
        names = [p.name for p in self.phones]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{self.source}: phone name(s) used twice: {', '.join(dup)}")
        addrs = [p.address for p in self.phones if p.address]
        dup = sorted({a for a in addrs if addrs.count(a) > 1})
        if dup:
            raise ConfigError(f"{self.source}: phone address(es) listed twice: {', '.join(dup)}")

    @property
    def simulated(self) -> bool:
        return all(p.simulated for p in self.phones)

    def jobs(self) -> list[Job]:
        """Every job of the night, in a stable order (phone, model, format, mode, threads, dynamic)."""
        dyn: tuple[str | None, ...] = tuple(None if d == FULL else d for d in self.matrix.dynamic) or (None,)
        return [
            Job(p.name, p.group, m, f, mode, t, d)
            for p in self.phones for m in self.matrix.models for f in self.matrix.formats
            for mode in self.matrix.modes for t in self.matrix.threads for d in dyn
        ]


def _build(cls, data: Any, where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(normalised) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    for k in ("models", "formats", "modes", "threads", "dynamic"):
        if k in normalised and cls is Matrix:
            normalised[k] = tuple(_list(normalised[k], f"{where}.{k}"))
    if cls is Matrix and "dynamic" in normalised:
        normalised["dynamic"] = tuple(dynamic_config_key(d, f"{where}.dynamic") for d in normalised["dynamic"])
    try:
        return cls(**normalised)
    except TypeError as err:  # a wrong type (e.g. a string where a number belongs)
        raise ConfigError(f"{where}: {err}") from None


def _phone(entry: Any, index: int, where: str) -> PhoneSpec:
    if isinstance(entry, str):
        entry = {"address": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: phones[{index}] must be an address or a mapping",
                          next_step="Write '- {name: bench-1, address: HOST:PORT, profile: pixel}'.")
    bad = sorted(set(entry) - {"name", "address", "profile", "tags"})
    if bad:
        raise ConfigError(f"{where}: phones[{index}] has unknown key(s) {', '.join(map(str, bad))}",
                          next_step="Allowed keys: name, address, profile, tags.")
    address = entry.get("address")
    if address is None or str(address).strip() == "":
        raise ConfigError(f"{where}: phones[{index}] has no address",
                          next_step="Add 'address: HOST:PORT' (adb over Wi-Fi) or 'address: USB_SERIAL'.")
    from device_runner.profiles import _normalise_address

    address = _normalise_address(str(address).strip())
    name = entry.get("name") or re.sub(r"[^A-Za-z0-9._-]", "-", address.removeprefix("usb:"))
    tags = entry.get("tags") or []
    return PhoneSpec(name=str(name), address=address, profile=entry.get("profile"),
                     tags=tuple(_list(tags, f"{where}.phones[{index}].tags")))


def parse_farm_mapping(data: Any, where: str = "farm") -> FarmConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping with 'phones' and 'matrix'",
                          next_step="See pipeline/nightly/README.md for an example farm.yaml.")
    bad = sorted(set(data) - {"phones", "matrix", "settings"})
    if bad:
        raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(map(str, bad))}",
                          next_step="Allowed keys: phones, matrix, settings.")
    phones = tuple(_phone(e, i, where) for i, e in enumerate(_list(data.get("phones") or [], f"{where}.phones")))
    return FarmConfig(phones=phones, matrix=_build(Matrix, data.get("matrix"), f"{where}.matrix"),
                      settings=_build(NightSettings, data.get("settings"), f"{where}.settings"), source=where)


def sim_farm(n: int, *, profile: str = DEFAULT_SIM_PROFILE) -> FarmConfig:
    """N simulated phones (started by the nightly command) and the default matrix."""
    if not 1 <= n <= 32:
        raise ConfigError(f"--farm sim:{n} is not allowed; use sim:1 to sim:32")
    phones = tuple(PhoneSpec(name=f"sim-{i + 1}", address=None, profile="sim", tags=(profile,), simulated=True)
                   for i in range(n))
    return FarmConfig(phones=phones, source=f"sim:{n}")


def load_farm(text: str | Path) -> FarmConfig:
    """``--farm``: ``sim:N`` or a farm.yaml path."""
    s = str(text).strip()
    if s.startswith("sim:") or s == "sim":
        try:
            n = int(s[4:] or "3")
        except ValueError:
            raise ConfigError(f"--farm {s!r}: write sim:N with N a number of simulated phones, e.g. sim:3") from None
        return sim_farm(n)
    import yaml

    path = Path(s)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"farm file {path} does not exist",
                          next_step="Check the --farm path, or use --farm sim:3 to try simulated phones.") from None
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"farm file {path} is not readable YAML: {err}", next_step="Fix the YAML syntax.") from None
    return parse_farm_mapping(data, str(path))
