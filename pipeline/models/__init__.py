"""Model architectures and the bundled default model (weights in ``pipeline/models/default/``).

Importing this package does not import torch; :func:`pipeline.models.loading.load_mixvit_dir` does.
"""

from __future__ import annotations

from pathlib import Path

#: Folder of the bundled default model: weights, config.json and MODEL_CARD.md.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"
