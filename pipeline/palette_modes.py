"""The palettes of the export modes, made from one set of fidelity settings.

``pipeline.deploy``, ``pipeline.dynamic`` and a night's dynamic configurations all export
``palette`` and ``palette-int8`` bundles; they read the same settings (`PALETTE_SETTINGS`: the
cluster count, a bits-per-weight budget, sensitivity, assignment, calibration and tuning) and
make the palettes here, so a skip configuration's files carry the same budgeted, GPTQ-assigned
or tuned palettes as the full model's (dynamic runs palettize the full model once and each
configuration keeps the palettes of the layers it still has).

What a bundle is made from is recorded beside it: `recorded_configs` gives each mode's palettize
settings plus, where calibration inputs are used, where they came from and how many there were,
so a bundle is reused only when all of that matches.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.deploy_config import DeployConfig
    from pipeline.palettize.config import PalettizeConfig

#: the `DeployConfig` fields that decide a palette mode's palettes (same names wherever they are set)
PALETTE_SETTINGS = ("clusters", "target_bits", "sensitivity", "assignment", "calibration", "calibration_data",
                    "calibration_augment", "tune_epochs", "tune_inputs")


@dataclass(frozen=True)
class PaletteFields:
    """The fidelity settings beyond ``clusters``, declared once for `DeployConfig` and the settings
    that pass them on to one (a dynamic run's, a night's); `DeployConfig` validates them."""

    target_bits: float | None = None
    sensitivity: str = "none"
    assignment: str = "nearest"
    calibration: int = 128
    calibration_data: str = "auto"
    calibration_augment: int = 0  # augmented inputs added to the calibration batch
    tune_epochs: int = 0  # end-to-end tuning of the palettes on augmented calibration inputs
    tune_inputs: int = 4096


def add_palette_arguments(p: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    """The command-line flags of `PALETTE_SETTINGS` (``default``: what an absent flag gives)."""
    p.add_argument("--clusters", type=int, default=default, help="k-means clusters per tensor (2-256, default 64)")
    p.add_argument("--target-bits", dest="target_bits", type=float, default=default,
                   help="palette modes: choose clusters per layer under this average bits per weight")
    p.add_argument("--sensitivity", default=default, help="palette modes: none | fisher | activation | output")
    p.add_argument("--assignment", default=default, help="palette modes: nearest | gptq")
    p.add_argument("--calibration", type=int, default=default,
                   help="calibration inputs for --sensitivity / --assignment gptq (default 128)")
    p.add_argument("--calibration-data", dest="calibration_data", default=default,
                   help="where calibration inputs come from: auto | default | images | sentences | random | file:PATH")
    p.add_argument("--calibration-augment", dest="calibration_augment", type=int, default=default,
                   help="add this many augmented inputs (photo crops, changed sentences) to the calibration batch")
    p.add_argument("--tune-epochs", dest="tune_epochs", type=int, default=default,
                   help="palette modes: tune the scales (int8) or codebooks end to end for N epochs (default 0)")
    p.add_argument("--tune-inputs", dest="tune_inputs", type=int, default=default,
                   help="augmented calibration inputs --tune-epochs tunes on (default 4096)")


def requested_configs(cfg: DeployConfig, modes: Sequence[str]) -> dict[str, PalettizeConfig]:
    """The `PalettizeConfig` of each palette mode among ``modes`` (``dense`` has none)."""
    return {mode: cfg.palettize_config(mode) for mode in modes if mode != "dense"}


def recorded_configs(cfg: DeployConfig, requested: dict[str, PalettizeConfig]) -> dict[str, dict | None]:
    """What each mode's bundles are made from: the palettize settings and, where calibration inputs
    are used, their source and counts (``dense``: None)."""
    recorded: dict[str, dict | None] = {"dense": None}
    for mode, pal in requested.items():
        doc = pal.to_dict()
        if pal.needs_calibration:
            doc["calibration"] = {"source": cfg.calibration_data, "rows": cfg.calibration}
            if cfg.calibration_augment:
                doc["calibration"]["augmented_rows"] = cfg.calibration_augment
            if pal.tune_epochs:
                doc["calibration"]["tuning_rows"] = cfg.tune_inputs
        recorded[mode] = doc
    return recorded


class PaletteCache:
    """Palettes made earlier in this process, by the weights' fingerprint and what a mode's
    bundles record (settings and calibration), so one night palettizes a model once for its full
    model's bundles and its skip configurations' (palettizing is seeded: the same inputs give the
    same palettes, so this only saves time)."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[dict, dict | None]] = {}

    @staticmethod
    def key(fingerprint: str, recorded: dict | None) -> str:
        return fingerprint + "\n" + json.dumps(recorded, sort_keys=True, default=str)

    def get(self, fingerprint: str, recorded: dict | None) -> tuple[dict, dict | None] | None:
        return self._made.get(self.key(fingerprint, recorded))

    def put(self, fingerprint: str, recorded: dict | None, palettes: dict, applied: dict | None) -> None:
        self._made[self.key(fingerprint, recorded)] = (palettes, applied)


def palettize_modes(
    cfg: DeployConfig,
    loaded: Any,
    requested: dict[str, PalettizeConfig],
    recorded: dict[str, dict | None],
    wanted: Sequence[str],
    *,
    log: Callable[[str], None] | None = None,
    advance: Callable[[float], None] | None = None,
    cache: PaletteCache | None = None,
    fingerprint: str | None = None,
) -> tuple[dict[str, dict], dict[str, dict | None]]:
    """Palettize ``loaded.module`` for each mode in ``wanted``: (palettes by mode, what each mode's
    bundles record: ``recorded`` with the per-layer layout a budget chose). Calibration inputs are
    loaded once, only when a mode still to palettize needs them. With a ``cache`` and the weights'
    ``fingerprint``, modes palettized before with the same record are taken from it."""
    from pipeline.palettize import palettize

    say = log or (lambda _m: None)
    module = loaded.module
    palettes: dict[str, dict] = {}
    applied = dict(recorded)
    if cache is not None and fingerprint is None:
        from pipeline.errors import InternalError

        raise InternalError("palettize_modes: a palette cache needs the weights' fingerprint")
    todo = []
    for mode in wanted:
        hit = cache.get(fingerprint, recorded[mode]) if cache is not None else None
        if hit is None:
            todo.append(mode)
            continue
        palettes[mode], applied[mode] = hit
        say(f"palettes of {mode}: the ones made earlier in this run (same weights and settings)")
        if advance:
            advance(1)
    calibration = tuning = None
    if any(requested[m].needs_calibration for m in todo):
        from pipeline.fidelity.data import load_data

        tune = any(requested[m].tune_epochs for m in todo)
        data = load_data(cfg.calibration_data, loaded, calibration=cfg.calibration,
                         tuning=cfg.tune_inputs if tune else 0, augment=cfg.calibration_augment)
        calibration, tuning = data.calibration, data.tuning
        say(f"calibration: {len(calibration)} inputs ({cfg.calibration_data})"
            + (f", tuning on {len(tuning)} augmented ones" if tuning is not None else ""))
    for mode in todo:
        result = palettize(module, requested[mode], calibration=calibration, tuning=tuning)
        palettes[mode] = result.palettes
        if result.budget is not None:  # the manifest records the layout chosen, layer by layer
            applied[mode] = {**(recorded[mode] or {}), **result.config.to_dict()}
        if cache is not None:
            cache.put(fingerprint, recorded[mode], palettes[mode], applied[mode])
        if advance:
            advance(1)
    return palettes, applied
