"""Shared fixtures for the converters tests (ONNX and TFLite helpers both use them).

Models are built once per session: the default model (pipeline.sources), random-weight timm
DeiT-Tiny and a convolution-heavy timm model (MobileNetV3-Small: depthwise convs, BatchNorm folded
by the exporter, squeeze-excite 1x1 convs). Palettes come from ``pipeline.palettize`` when it is
importable; otherwise from :func:`simple_palettes`, a small quantile palettizer with the same
attributes (name, shape, codebook, indices, group_size, scale), so the export tests do not depend
on the k-means code being ready.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

CLUSTERS = 64


@dataclass
class SimplePalette:
    name: str
    shape: tuple[int, ...]
    codebook: np.ndarray
    indices: np.ndarray
    group_size: int | None
    scale: np.ndarray | None

    def group_of_channel(self) -> np.ndarray:
        out = self.shape[0]
        if self.codebook.shape[0] == 1:
            return np.zeros(out, dtype=np.int64)
        return np.arange(out) // self.group_size

    def decode(self) -> np.ndarray:
        rows = self.group_of_channel().reshape((-1,) + (1,) * (len(self.shape) - 1))
        w = self.codebook[rows, self.indices.astype(np.int64)]
        if self.scale is not None:
            w = w * self.scale.reshape((-1,) + (1,) * (len(self.shape) - 1))
        return w.astype(np.float32)


def _cluster(values: np.ndarray, k: int, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Quantile centroids + nearest assignment (not k-means; enough to test the exporters)."""
    qs = np.quantile(values, (np.arange(k) + 0.5) / k)
    if integer:
        qs = np.clip(np.rint(qs), -127, 127)
    centroids = np.unique(qs.astype(np.float32))
    pad = k - centroids.size
    if pad:  # keep exactly k entries; unused duplicates are harmless
        centroids = np.concatenate([centroids, np.full(pad, centroids[-1], np.float32)])
    c = np.sort(centroids)
    idx = np.searchsorted((c[1:] + c[:-1]) / 2, values)
    return c.astype(np.float32), idx.astype(np.uint8)


def simple_palettes(module, clusters: int = CLUSTERS, int8_grid: bool = False, group_size: int | None = None,
                    min_elements: int = 2048) -> dict[str, SimplePalette]:
    import torch

    out = {}
    for mod_name, mod in module.named_modules():
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        w = mod.weight.detach().cpu().numpy().astype(np.float32)
        if w.size < min_elements:
            continue
        name = f"{mod_name}.weight" if mod_name else "weight"
        scale = None
        values = w
        if int8_grid:
            amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
            scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
            values = w / scale.reshape((-1,) + (1,) * (w.ndim - 1))
        groups = [np.arange(w.shape[0])] if not group_size else [
            np.arange(s, min(s + group_size, w.shape[0])) for s in range(0, w.shape[0], group_size)]
        codebook = np.zeros((len(groups), clusters), np.float32)
        indices = np.zeros(w.shape, np.uint8)
        for g, chans in enumerate(groups):
            c, idx = _cluster(values[chans].reshape(-1), clusters, int8_grid)
            codebook[g] = c
            indices[chans] = idx.reshape(values[chans].shape)
        out[name] = SimplePalette(name, tuple(w.shape), codebook, indices, group_size if len(groups) > 1 else None,
                                  scale)
    return out


def make_palettes(module, clusters: int = CLUSTERS, int8_grid: bool = False, group_size: int | None = None):
    """Real palettizer when available, else the simple one. Returns (palettes, config dict or None)."""
    try:
        from pipeline.palettize import PalettizeConfig, palettize
    except ImportError:
        return simple_palettes(module, clusters, int8_grid, group_size), None
    kwargs = {"clusters": clusters, "int8_grid": int8_grid}
    if group_size:
        kwargs.update(granularity="per_channel_group", group_size=group_size)
    config = PalettizeConfig(**kwargs)
    result = palettize(module, config)
    import dataclasses

    return result.palettes, dataclasses.asdict(config)


@dataclass
class ModelCase:
    name: str
    module: object
    example_input: object
    palettes: dict
    palettes_int8: dict


def _case(name: str, module, example_input) -> ModelCase:
    module = module.eval()
    pal, _ = make_palettes(module)
    pal8, _ = make_palettes(module, int8_grid=True)
    return ModelCase(name, module, example_input, pal, pal8)


def _load(source: str):
    """(module, example_input) via pipeline.sources when ready, else built directly (timm only)."""
    try:
        from pipeline.sources import load_model
    except ImportError:
        load_model = None
    if load_model is not None:
        loaded = load_model(source)
        return loaded.module, loaded.example_input(batch=1, seed=0)
    if source == "default":
        pytest.skip("pipeline.sources is not available yet (default model)")
    import timm
    import torch

    arch = source.split(":")[1]
    torch.manual_seed(0)
    module = timm.create_model(arch, pretrained=False).eval()
    return module, torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def default_case() -> ModelCase:
    return _case("default", *_load("default"))


@pytest.fixture(scope="session")
def deit_case() -> ModelCase:
    return _case("timm:deit_tiny_patch16_224:random", *_load("timm:deit_tiny_patch16_224:random"))


@pytest.fixture(scope="session")
def conv_case() -> ModelCase:
    return _case("timm:mobilenetv3_small_100:random", *_load("timm:mobilenetv3_small_100:random"))


@pytest.fixture(scope="session")
def tiny_case() -> ModelCase:
    """A small CNN + MLP built here (Conv, depthwise Conv, BatchNorm, Linear, shared input)."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 32, 3, padding=1)
            self.bn = nn.BatchNorm2d(32)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
            self.pw = nn.Conv2d(32, 64, 1)
            self.fc1 = nn.Linear(64 * 7 * 7, 96)
            self.q = nn.Linear(96, 96)
            self.k = nn.Linear(96, 96)
            self.head = nn.Linear(96, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x)))
            x = nn.functional.max_pool2d(torch.relu(self.pw(self.dw(x))), 4)
            h = torch.relu(self.fc1(x.flatten(1)))
            return self.head(torch.tanh(self.q(h)) * torch.sigmoid(self.k(h)))

    torch.manual_seed(0)
    module = Tiny().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics so the exporter's folding shows
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
        module.bn.weight.uniform_(0.5, 1.5)
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    pal = simple_palettes(module, min_elements=256)
    pal8 = simple_palettes(module, int8_grid=True, min_elements=256)
    return ModelCase("tiny", module, x, pal, pal8)
