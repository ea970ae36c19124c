"""Load a MixViT from a folder holding ``config.json`` and ``model.safetensors``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.models import CONFIG_FILE, WEIGHTS_FILE

if TYPE_CHECKING:
    from pipeline.models.mixvit import MixViT

CONFIG_FORMAT_VERSION = 1


def read_config(directory: Path) -> dict[str, Any]:
    """The folder's config.json, checked for the keys the loader needs."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelLoadError(f"model config {path} is missing",
                             next_step="Reinstall the package or retrain with "
                                       "`python -m pipeline.models.train_default`.", path=str(path)) from err
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"model config {path} cannot be read: {err}",
                             next_step="Reinstall the package or retrain the model.", path=str(path)) from err
    if not isinstance(config, dict) or config.get("architecture") != "MixViT" or "mixvit" not in config:
        raise ModelLoadError(f"{path} is not a MixViT config (expected keys 'architecture': 'MixViT' and 'mixvit')",
                             next_step="Retrain with `python -m pipeline.models.train_default`.", path=str(path))
    if config.get("format_version") != CONFIG_FORMAT_VERSION:
        raise ModelLoadError(f"{path} has format_version {config.get('format_version')!r}, this tool reads "
                             f"{CONFIG_FORMAT_VERSION}", next_step="Retrain the model with this version of the tool.",
                             path=str(path))
    return config


def load_mixvit_dir(directory: Path) -> tuple[MixViT, dict[str, Any]]:
    """Build the architecture from config.json and load its weights (float32, eval mode)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from pipeline.models.mixvit import MixViT, MixViTConfig

    directory = Path(directory)
    config = read_config(directory)
    try:
        arch = MixViTConfig.from_dict(config["mixvit"])
    except (ConfigError, TypeError) as err:
        raise ModelLoadError(f"{directory / CONFIG_FILE}: bad architecture settings: {err}",
                             next_step="Retrain the model.", path=str(directory)) from err
    weights_path = directory / config.get("weights", {}).get("file", WEIGHTS_FILE)
    if not weights_path.is_file():
        raise ModelLoadError(
            f"model weights {weights_path} are missing",
            next_step="Reinstall the package, or retrain them with "
                      f"`python -m pipeline.models.train_default --out {directory}`.",
            path=str(weights_path),
        )
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(f"model weights {weights_path} cannot be read as safetensors: {err}",
                             next_step="The file is damaged; reinstall the package or retrain the model.",
                             path=str(weights_path)) from err
    model = MixViT(arch)
    state = {name: tensor.to(torch.float32) for name, tensor in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelLoadError(f"model weights {weights_path} do not fit the architecture in {CONFIG_FILE}: {first}",
                             next_step="Retrain the model so weights and config match.",
                             path=str(weights_path)) from err
    return model.eval(), config
