"""The bundles of ``matrix.dynamic``: one per skip configuration x format x mode, reused across nights.

The full model's bundles come from ``pipeline.deploy.build_bundles``; the skip configurations are
exported by ``pipeline.dynamic.export.export_configs`` into ``OUT/models/MODEL/dynamic/`` and,
like deploy's bundles, kept with a ``FOLDER.request.json`` naming what they were made from
(model, weights, configuration, format, mode, palette settings, exporter versions): a bundle
whose request matches is reused the next night, any other is exported again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def check_configs(configs: list[str], units: list[Any], model: str) -> dict[str, frozenset[str]]:
    """Each configuration key -> its unit names; a unit the model lacks is a ConfigError listing the known ones."""
    known = [u.name for u in units]
    out: dict[str, frozenset[str]] = {}
    for cfg in configs:
        names = frozenset() if cfg == "full" else frozenset(cfg.split("+"))
        unknown = sorted(names - set(known))
        if unknown:
            raise ConfigError(
                f"matrix.dynamic: model {model!r} has no skip unit(s) {', '.join(unknown)} (in {cfg!r})",
                next_step=f"Use the units of this model: {', '.join(known)}.",
            )
        out[cfg] = names
    return out


def build_dynamic_bundles(model: str, configs: list[str], formats: tuple[str, ...], modes: tuple[str, ...],
                          settings: Any, out: Path, steps: Any, *,
                          palette_cache: Any = None) -> dict[tuple[str, str, str, str], Any]:
    """(model, format, mode, configuration key) -> BundleInfo for every skip configuration of one model;
    ``palette_cache`` (`pipeline.palette_modes.PaletteCache`): the full model's palettes when this
    night's full-model export already made them."""
    import torch

    from pipeline.deploy import (
        BundleInfo,
        _evaluation_batch,
        _exporter_versions,
        _file_quality,
        _model_fingerprint,
        _reusable,
    )
    from pipeline.deploy_config import DeployConfig
    from pipeline.dynamic.export import bundle_name, export_configs
    from pipeline.dynamic.skip import find_units
    from pipeline.fsutil import atomic_write_json
    from pipeline.palette_modes import palettize_modes, recorded_configs, requested_configs
    from pipeline.sources import load_model

    with steps.step(f"load {model} for its dynamic configurations"):
        loaded = load_model(model)
        module = loaded.module.eval()
        units = find_units(module)
        skips = check_configs(list(configs), units, model)
        fingerprint = _model_fingerprint(module)
        example = loaded.example_input(batch=1, seed=0)

    folder = out / "dynamic"
    folder.mkdir(parents=True, exist_ok=True)
    versions = _exporter_versions()

    cfg_deploy = DeployConfig(device="sim", model=model, formats=formats, modes=modes, out=str(out),
                              **settings.deploy_fields())
    requested = requested_configs(cfg_deploy, modes)
    recorded = recorded_configs(cfg_deploy, requested)

    def request(cfg: str, fmt: str, mode: str) -> dict[str, Any]:
        return {"model": model, "weights_sha256": fingerprint, "dynamic_config": cfg, "format": fmt, "mode": mode,
                "palettize_config": recorded.get(mode), "exporters": versions}

    cells = [(cfg, f, m) for cfg in skips for f in formats for m in modes]
    manifests = {c: _reusable(folder / bundle_name(c[1], c[2], skips[c[0]]), request(*c)) for c in cells}
    stale = [cfg for cfg in skips if any(manifests[(cfg, f, m)] is None for f in formats for m in modes)]
    palettes: dict[str, dict] = {}
    applied = recorded
    wanted = list(requested) if stale else []  # the full model's palettes, once, when anything is exported
    with steps.step("palettize for dynamic configurations", total=max(1, len(wanted))) as advance:
        if wanted:
            palettes, applied = palettize_modes(cfg_deploy, loaded, requested, recorded, wanted, log=steps.log,
                                                advance=advance, cache=palette_cache, fingerprint=fingerprint)
    with steps.step("export dynamic configurations", total=max(1, len(stale) * len(formats) * len(modes))) as advance:
        for cfg in stale:
            for ex in export_configs(module, units, [skips[cfg]], example, folder, formats=formats, modes=modes,
                                     clusters=settings.clusters, source_model=model, model_name=loaded.name,
                                     progress=advance, palettes=palettes, palettize_configs=applied):
                atomic_write_json(folder / f"{ex.path.name}.request.json", request(cfg, ex.format, ex.mode))
                manifests[(cfg, ex.format, ex.mode)] = ex.manifest

    x_eval, y_eval = _evaluation_batch(loaded, cfg_deploy)
    with torch.no_grad():
        dense = torch.cat([module(torch.from_numpy(x_eval[i: i + 128])) for i in range(0, len(x_eval), 128)])
    dense_top1 = dense.reshape(len(x_eval), -1).argmax(dim=1).numpy()
    bundles: dict[tuple[str, str, str, str], Any] = {}
    for cfg, fmt, mode in cells:
        path = folder / bundle_name(fmt, mode, skips[cfg])
        manifest = manifests[(cfg, fmt, mode)]
        acc, agree = _file_quality(path, manifest, x_eval, y_eval, dense_top1)
        bundles[(model, fmt, mode, cfg)] = BundleInfo(fmt, mode, path, manifest, acc, agree, cfg not in stale)
    return bundles
