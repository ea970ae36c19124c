"""The settings of `python -m pipeline.deploy`: one dataclass, from the command line and/or YAML.

A YAML file (``--config``) gives defaults; flags given on the command line win. Unknown keys and
impossible values are rejected with a message naming the key and what is allowed. The resolved
settings are saved beside the results (``deploy_config.json``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.palette_modes import PaletteFields, add_palette_arguments

FORMATS = ("onnx", "tflite")
MODES = ("dense", "palette", "palette-int8")


def _csv(value: Any, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    if not items:
        raise ConfigError(f"{name} is empty; use a comma-separated list of {', '.join(allowed)}")
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ConfigError(f"{name}: unknown value(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class DeployConfig(PaletteFields):
    """Every setting of a deploy run. The palette modes' fidelity settings (`PaletteFields`) become
    each mode's `PalettizeConfig`; calibration inputs come from ``calibration_data`` (the sources
    of `pipeline.fidelity`) when a mode needs some."""

    device: str = "sim"
    model: str = "default"
    clusters: int = 64
    formats: tuple[str, ...] = FORMATS
    modes: tuple[str, ...] = MODES
    threads: int = 1
    runs: int = 30
    warmup: int = 5
    min_duration_s: float = 3.0
    cooldown_s: float = 2.0
    thermal_timeout_s: float = 120.0
    battery_floor_pct: int = 20
    job_timeout_s: float = 600.0
    collector: str | None = None
    collector_token: str | None = None
    out: str = "out/deploy"
    apk: str | None = None
    devices_file: str | None = None
    allow_pickle: bool = False
    run_set: str | None = None
    sim_profile: str = "pixel-8"
    eval_limit: int | None = None
    auth_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        numbers = ("clusters", "threads", "runs", "warmup", "min_duration_s", "cooldown_s", "thermal_timeout_s",
                   "battery_floor_pct", "job_timeout_s", "auth_timeout_s")
        for name in numbers:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"deploy setting {name}={value!r} is not a number")
        if self.eval_limit is not None and (isinstance(self.eval_limit, bool) or not isinstance(self.eval_limit, int)):
            raise ConfigError(f"deploy setting eval_limit={self.eval_limit!r} is not an integer")
        if not isinstance(self.formats, str | list | tuple) or not isinstance(self.modes, str | list | tuple):
            raise ConfigError("deploy settings formats and modes are comma-separated strings or lists, "
                              f"got {self.formats!r} and {self.modes!r}")
        object.__setattr__(self, "formats", _csv(self.formats, "formats", FORMATS))
        object.__setattr__(self, "modes", _csv(self.modes, "modes", MODES))
        checks = [
            (isinstance(self.clusters, int) and 2 <= self.clusters <= 256, "clusters", "an integer 2-256"),
            (isinstance(self.threads, int) and 1 <= self.threads <= 64, "threads", "an integer 1-64"),
            (isinstance(self.runs, int) and self.runs >= 1, "runs", "an integer >= 1"),
            (isinstance(self.warmup, int) and self.warmup >= 0, "warmup", "an integer >= 0"),
            (self.min_duration_s >= 0, "min_duration_s", "seconds >= 0"),
            (self.cooldown_s >= 0, "cooldown_s", "seconds >= 0"),
            (self.thermal_timeout_s >= 0, "thermal_timeout_s", "seconds >= 0"),
            (0 <= self.battery_floor_pct <= 100, "battery_floor_pct", "a percentage 0-100"),
            (self.job_timeout_s > 0, "job_timeout_s", "seconds > 0"),
            (bool(self.device), "device", "a profile (pixel, generic, sim), a USB serial or HOST:PORT"),
            (bool(self.model), "model", "a model source such as default or timm:NAME"),
            (self.collector is None or self.collector.startswith(("http://", "https://")), "collector",
             "an http:// or https:// URL"),
            (self.eval_limit is None or self.eval_limit >= 1, "eval_limit", "an integer >= 1"),
            (self.auth_timeout_s > 0, "auth_timeout_s", "seconds > 0"),
            (isinstance(self.calibration, int) and not isinstance(self.calibration, bool) and self.calibration >= 1,
             "calibration", "an integer >= 1"),
            (isinstance(self.calibration_augment, int) and not isinstance(self.calibration_augment, bool)
             and self.calibration_augment >= 0, "calibration_augment", "an integer >= 0"),
            (isinstance(self.tune_inputs, int) and not isinstance(self.tune_inputs, bool) and self.tune_inputs >= 1,
             "tune_inputs", "an integer >= 1"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise ConfigError(f"deploy setting {name}={getattr(self, name)!r} is not allowed; use {allowed}")
        self.palettize_config("palette")  # the fidelity settings are checked where they are defined

    def palettize_config(self, mode: str):
        """The `PalettizeConfig` of a palette mode (``palette`` or ``palette-int8``)."""
        from pipeline.palettize.config import PalettizeConfig

        return PalettizeConfig(clusters=self.clusters, int8_grid=(mode == "palette-int8"),
                               target_bits=self.target_bits, sensitivity=self.sensitivity,
                               assignment=self.assignment, tune_epochs=self.tune_epochs)

    def run_settings(self):
        """The device_runner settings for each job (one place that maps deploy names to runner names)."""
        from device_runner.runner import RunSettings

        return RunSettings(
            threads=self.threads, warmup_runs=self.warmup, measured_runs=self.runs,
            min_duration_s=self.min_duration_s, cooldown_s=self.cooldown_s,
            thermal_timeout_s=self.thermal_timeout_s, battery_floor_pct=self.battery_floor_pct,
            job_timeout_s=self.job_timeout_s, run_set=self.run_set,
        )

    @property
    def simulated(self) -> bool:
        return self.device == "sim"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["formats"] = list(self.formats)
        d["modes"] = list(self.modes)
        d.pop("collector_token", None)
        return d

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, where: str = "config") -> DeployConfig:
        known = {f.name for f in fields(cls)}
        normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(normalised) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**normalised)

    @classmethod
    def from_yaml(cls, path: str | Path) -> dict[str, Any]:
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist", next_step="Check the --config path.") from None
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"config file {p} is not readable YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of settings, not {type(data).__name__}")
        cls.from_mapping(data, where=str(p))  # validate keys and values early
        return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.deploy",
        description="Palettize a model, export verified ONNX/TFLite bundles, run them on a phone "
        "(or the simulated phone) and store latency and energy results.",
    )
    S = argparse.SUPPRESS
    p.add_argument("--device", default=S, help="pixel | generic | sim | USB serial | HOST:PORT | a name in devices.yaml")
    p.add_argument("--model", default=S, help="model source: default, timm:NAME[:random], a .pt/.pt2 file")
    p.add_argument("--formats", default=S, help="comma-separated: onnx,tflite")
    p.add_argument("--modes", default=S, help="comma-separated: dense,palette,palette-int8")
    p.add_argument("--threads", type=int, default=S, help="inference threads on the phone (default 1)")
    p.add_argument("--runs", type=int, default=S, help="measured runs per job (default 30)")
    p.add_argument("--warmup", type=int, default=S, help="warm-up runs per job (default 5)")
    p.add_argument("--min-duration-s", dest="min_duration_s", type=float, default=S)
    p.add_argument("--cooldown-s", dest="cooldown_s", type=float, default=S, help="pause between jobs")
    p.add_argument("--thermal-timeout-s", dest="thermal_timeout_s", type=float, default=S)
    p.add_argument("--battery-floor-pct", dest="battery_floor_pct", type=int, default=S,
                   help="do not measure under this battery level (default 20)")
    p.add_argument("--job-timeout-s", dest="job_timeout_s", type=float, default=S)
    p.add_argument("--collector", default=S, help="collector URL; default: a local one storing into OUT/runs.db")
    p.add_argument("--collector-token", dest="collector_token", default=S)
    p.add_argument("--out", default=S, help="output folder (bundles, results.json, report.html)")
    p.add_argument("--apk", default=S, help="install the benchmark app from this APK first")
    p.add_argument("--devices", dest="devices_file", default=S, help="devices.yaml naming phones")
    p.add_argument("--allow-pickle", dest="allow_pickle", action="store_true", default=S)
    p.add_argument("--run-set", dest="run_set", default=S, help="label grouping these runs")
    p.add_argument("--sim-profile", dest="sim_profile", default=S, help="profile of the simulated phone")
    p.add_argument("--eval-limit", dest="eval_limit", type=int, default=S,
                   help="evaluate accuracy on at most this many test images")
    p.add_argument("--auth-timeout-s", dest="auth_timeout_s", type=float, default=S,
                   help="how long to wait for the phone's USB debugging prompt to be accepted")
    add_palette_arguments(p, S)
    p.add_argument("--config", default=None, help="YAML file with any of these settings (flags win)")
    return p


def parse_args(argv: list[str] | None) -> DeployConfig:
    args = vars(build_parser().parse_args(argv))
    config_path = args.pop("config", None)
    data = DeployConfig.from_yaml(config_path) if config_path else {}
    data.update(args)
    return DeployConfig.from_mapping(data, where=config_path or "command line")
