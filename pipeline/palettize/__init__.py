"""Palettization: cluster each weight tensor's values into a small codebook (k-means).

``from pipeline.palettize import PalettizeConfig, palettize`` is all most callers need. The
names load lazily so that ``import pipeline.palettize`` stays light (no torch, no numpy work).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "PalettizeConfig": "pipeline.palettize.config",
    "Granularity": "pipeline.palettize.config",
    "Init": "pipeline.palettize.config",
    "Algorithm": "pipeline.palettize.config",
    "Sensitivity": "pipeline.palettize.config",
    "Assignment": "pipeline.palettize.config",
    "Palette": "pipeline.palettize.palette",
    "save_palettes": "pipeline.palettize.palette",
    "load_palettes": "pipeline.palettize.palette",
    "load_palette_config": "pipeline.palettize.palette",
    "palettize": "pipeline.palettize.apply",
    "palettize_array": "pipeline.palettize.apply",
    "PalettizeResult": "pipeline.palettize.apply",
    "register_handler": "pipeline.palettize.apply",
    "select_weights": "pipeline.palettize.apply",
    "bits_per_weight": "pipeline.palettize.apply",
    "Report": "pipeline.palettize.report",
    "TensorReport": "pipeline.palettize.report",
    "kmeans_1d": "pipeline.palettize.kmeans1d",
    "kmeans_1d_many": "pipeline.palettize.kmeans1d",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs only
    from pipeline.palettize.apply import (  # noqa: F401
        PalettizeResult,
        bits_per_weight,
        palettize,
        palettize_array,
        register_handler,
        select_weights,
    )
    from pipeline.palettize.config import (  # noqa: F401
        Algorithm,
        Assignment,
        Granularity,
        Init,
        PalettizeConfig,
        Sensitivity,
    )
    from pipeline.palettize.kmeans1d import kmeans_1d, kmeans_1d_many  # noqa: F401
    from pipeline.palettize.palette import (  # noqa: F401
        Palette,
        load_palette_config,
        load_palettes,
        save_palettes,
    )
    from pipeline.palettize.report import Report, TensorReport  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline.palettize' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
