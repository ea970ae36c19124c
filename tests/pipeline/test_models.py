"""The bundled default model: trained, big enough to cluster, shaped like a SegFormer-style ViT."""

from __future__ import annotations

import copy
import hashlib
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.data import MNIST_MEAN, MNIST_STD, load_default_dataset, split_indices
from pipeline.errors import ConfigError, ModelLoadError
from pipeline.evaluate import top1_accuracy
from pipeline.models import CARD_FILE, CONFIG_FILE, DEFAULT_MODEL_DIR, WEIGHTS_FILE
from pipeline.models.loading import load_mixvit_dir
from pipeline.models.mixvit import Block, MixViT, MixViTConfig

MIN_ACCURACY = 0.96
MIN_CLUSTERABLE = 500_000


def _clusterable(module: nn.Module, threshold: int = 2048) -> dict[str, int]:
    return {name: m.weight.numel() for name, m in module.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight.numel() >= threshold}


def test_shipped_files_exist_and_are_small():
    weights = DEFAULT_MODEL_DIR / WEIGHTS_FILE
    assert weights.is_file(), f"{weights} missing: run python -m pipeline.models.train_default --out {DEFAULT_MODEL_DIR}"
    assert weights.stat().st_size < 4 * 1024 * 1024
    assert (DEFAULT_MODEL_DIR / CONFIG_FILE).is_file()
    assert (DEFAULT_MODEL_DIR / CARD_FILE).is_file()


def test_config_matches_weights_and_data():
    config = json.loads((DEFAULT_MODEL_DIR / CONFIG_FILE).read_text())
    assert config["input"]["shape"] == [1, 1, 28, 28]
    assert config["input"]["mean"] == [MNIST_MEAN] and config["input"]["std"] == [MNIST_STD]
    digest = hashlib.sha256((DEFAULT_MODEL_DIR / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert config["weights"]["sha256"] == digest, "config.json names other weights than the shipped file"


def test_default_model_reaches_accuracy_and_card_is_honest(default_model, default_test_split):
    x, y = default_test_split
    acc = top1_accuracy(default_model.module, x, y)
    assert acc >= MIN_ACCURACY
    card = (DEFAULT_MODEL_DIR / CARD_FILE).read_text()
    stated = re.search(r"test accuracy[^|]*\|\s*\*\*([0-9.]+)\*\*", card)
    assert stated, "MODEL_CARD.md does not state the test accuracy"
    assert abs(float(stated.group(1)) - acc) < 1e-3, "the card's accuracy differs from the measured one"


def test_enough_parameters_in_clusterable_tensors(default_model):
    sizes = _clusterable(default_model.module)
    assert sum(sizes.values()) >= MIN_CLUSTERABLE
    modules = dict(default_model.module.named_modules())
    kinds = {type(modules[name]).__name__ for name in sizes}
    assert kinds == {"Linear", "Conv2d"}
    depthwise = [name for name in sizes if isinstance(modules[name], nn.Conv2d)
                 and modules[name].groups == modules[name].in_channels > 1]
    assert depthwise, "no depthwise Conv2d weight large enough to cluster"


def test_blocks_have_skippable_branches(default_model, default_batch):
    model = copy.deepcopy(default_model.module)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert blocks
    for block in blocks:
        assert isinstance(block.attn.qkv, nn.Linear) and isinstance(block.attn.proj, nn.Linear)
        assert isinstance(block.mlp.dwconv, nn.Conv2d) and block.mlp.dwconv.kernel_size == (3, 3)
    x = torch.from_numpy(np.array(default_batch[:8]))
    block = model.blocks[0]
    token = torch.randn(1, model.cfg.grid_size ** 2, model.cfg.embed_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(x)
        attn, mlp = block.attn, block.mlp
        block.attn = _Zero()   # attention branch skipped: residual passes the tokens through
        assert torch.allclose(block(token), token + mlp(block.norm2(token)))
        assert not torch.allclose(model(x), full)
        block.attn, block.mlp = attn, _Zero()
        assert torch.allclose(block(token), token + attn(block.norm1(token)))
        assert not torch.allclose(model(x), full)


class _Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_missing_weights_is_a_model_load_error(tmp_path):
    (tmp_path / CONFIG_FILE).write_text((DEFAULT_MODEL_DIR / CONFIG_FILE).read_text())
    with pytest.raises(ModelLoadError, match="missing"):
        load_mixvit_dir(tmp_path)


def test_config_validation():
    with pytest.raises(ConfigError, match="divisible"):
        MixViTConfig(embed_dim=130, num_heads=4)
    with pytest.raises(ConfigError, match="depth"):
        MixViTConfig(depth=0)
    with pytest.raises(ConfigError, match="unknown"):
        MixViTConfig.from_dict({"embed_dim": 64, "colour": "red"})
    small = MixViT(MixViTConfig(embed_dim=32, depth=1, num_heads=2, img_size=32, in_chans=3))
    assert small(torch.zeros(small.input_shape)).shape == (1, 10)


def test_split_is_fixed_disjoint_and_stratified():
    x1, y1 = load_default_dataset("train")
    x2, y2 = load_default_dataset("train")
    xt, yt = load_default_dataset("test")
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x1.dtype == np.float32 and y1.dtype == np.int64
    assert np.bincount(yt).tolist() == [100] * 10
    labels = np.concatenate([y1, yt])
    train_idx, test_idx = split_indices(np.sort(labels))
    assert not set(train_idx) & set(test_idx)
    other_train, _ = split_indices(np.sort(labels), seed=1)
    assert not np.array_equal(train_idx, other_train), "the seed has no effect on the split"
    raw, _ = load_default_dataset("test", normalized=False)
    assert raw.min() >= 0 and raw.max() <= 1
    with pytest.raises(ConfigError, match="train, test"):
        load_default_dataset("validation")


@pytest.mark.slow
def test_training_is_reproducible(tmp_path):
    """Two runs of the training command with the same seed give the same weights (tiny config).

    Equal to float32 noise, not bit for bit: BLAS kernels may sum in a different order when their
    buffers land at different alignments, which was seen here on a loaded machine.
    """
    import subprocess
    import sys

    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        cmd = [sys.executable, "-m", "pipeline.models.train_default", "--out", str(out), "--epochs", "1",
               "--depth", "1", "--embed-dim", "32", "--num-heads", "2", "--eval-every", "0", "--threads", "1"]
        subprocess.run(cmd, check=True, capture_output=True, cwd=DEFAULT_MODEL_DIR.parents[2], timeout=300)
        from safetensors.numpy import load_file

        digests.append(load_file(str(out / WEIGHTS_FILE)))
        card = (out / CARD_FILE).read_text()
        assert "--epochs 1" in card and "Seed 0" in card
    assert digests[0].keys() == digests[1].keys()
    for name, a in digests[0].items():
        np.testing.assert_allclose(a.astype(np.float32), digests[1][name].astype(np.float32), rtol=0, atol=2e-3,
                                   err_msg=name)
    loaded = load_mixvit_dir(tmp_path / "a")[0]
    assert loaded.cfg.embed_dim == 32 and len(loaded.blocks) == 1
