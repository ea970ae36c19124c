"""Model sources: every --model form loads, and every bad one fails with a readable next step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.errors import ModelLoadError
from pipeline.models import DEFAULT_MODEL_DIR
from pipeline.sources import LoadedModel, load_model, parse_input_shape, sniff_model_file

REPO = Path(__file__).resolve().parents[2]


def _small_cnn() -> nn.Module:
    """A model of torch built-ins only (so a pickle of it loads anywhere), other than the default."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5)).eval()


def _same_outputs(a: nn.Module, b: nn.Module, shape) -> bool:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


def test_import_does_not_load_torch():
    code = "import sys, pipeline.sources, pipeline.data, pipeline.evaluate, pipeline.models; " \
           "print(sorted(m for m in ('torch', 'timm', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_default(default_model):
    assert isinstance(default_model, LoadedModel)
    assert default_model.name == "default" and default_model.kind == "mixvit"
    assert default_model.input_shape == (1, 1, 28, 28) and default_model.num_classes == 10
    assert not default_model.module.training
    assert all(p.dtype == torch.float32 for p in default_model.module.parameters())
    x = default_model.example_input(batch=3, seed=5)
    assert x.shape == (3, 1, 28, 28) and torch.equal(x, default_model.example_input(batch=3, seed=5))
    assert not torch.equal(x, default_model.example_input(batch=3, seed=6))


def test_mixvit_folder(default_model):
    loaded = load_model(str(DEFAULT_MODEL_DIR))
    assert loaded.kind == "mixvit" and _same_outputs(loaded.module, default_model.module, (2, 1, 28, 28))


@pytest.mark.parametrize("which", ["cnn", "default"])
def test_torchscript_roundtrip(tmp_path, which, default_model):
    module = _small_cnn() if which == "cnn" else default_model.module
    shape = (1, 3, 16, 16) if which == "cnn" else (1, 1, 28, 28)
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.trace(module, torch.zeros(shape)), str(path))
    assert sniff_model_file(path) == "torchscript"
    with pytest.raises(ModelLoadError, match="input-shape"):
        load_model(str(path))          # TorchScript does not say its input shape
    loaded = load_model(str(path), input_shape=",".join(map(str, shape)))
    assert loaded.kind == "torchscript" and loaded.input_shape == shape
    assert loaded.num_classes == (5 if which == "cnn" else 10)
    assert _same_outputs(loaded.module, module, shape)


def test_exported_program_roundtrip(tmp_path):
    module = _small_cnn()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(1, 3, 12, 12),)), str(path))
    loaded = load_model(f"file:{path}")
    assert loaded.kind == "exported_program"
    assert loaded.input_shape == (1, 3, 12, 12)     # taken from the program's example input
    assert loaded.num_classes == 5 and loaded.name == "file:model.pt2"
    loaded.module.eval()                             # torch.export modules normally refuse eval()
    assert _same_outputs(loaded.module, module, (1, 3, 12, 12))


@pytest.mark.slow
def test_exported_program_of_default_model(tmp_path, default_model):
    path = tmp_path / "mixvit.pt2"
    torch.export.save(torch.export.export(default_model.module, (default_model.example_input(),)), str(path))
    loaded = load_model(str(path))
    assert loaded.input_shape == (1, 1, 28, 28)
    assert _same_outputs(loaded.module, default_model.module, (1, 1, 28, 28))


@pytest.mark.parametrize("which", ["cnn", "default"])
def test_pickled_module_needs_the_flag(tmp_path, which, default_model):
    module = _small_cnn() if which == "cnn" else default_model.module
    shape = (1, 3, 16, 16) if which == "cnn" else (1, 1, 28, 28)
    path = tmp_path / "whole.pt"
    torch.save(module, path)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(path))
    text = str(err.value)
    assert "--allow-pickle" in text and "code" in text and str(path) in text
    kwargs = {} if which == "default" else {"input_shape": shape}   # MixViT says its own input shape
    loaded = load_model(str(path), allow_pickle=True, **kwargs)
    assert loaded.kind == "pickle" and loaded.input_shape == shape
    assert _same_outputs(loaded.module, module, shape)


def test_pickled_state_dict_is_explained(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(_small_cnn().state_dict(), path)
    with pytest.raises(ModelLoadError, match="state_dict"):
        load_model(str(path), allow_pickle=True, input_shape=(1, 3, 8, 8))


@pytest.mark.parametrize("kind", ["torchscript", "pickle", "export"])
def test_truncated_file(tmp_path, kind):
    full = tmp_path / "full.bin"
    module = _small_cnn()
    if kind == "torchscript":
        torch.jit.save(torch.jit.script(module), str(full))
    elif kind == "export":
        torch.export.save(torch.export.export(module, (torch.zeros(1, 3, 8, 8),)), str(full))
    else:
        torch.save(module, full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as err:
        load_model(str(cut), allow_pickle=True, input_shape=(1, 3, 8, 8))
    assert str(cut) in str(err.value) and "truncated" in str(err.value)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, this is not a model\n")
    with pytest.raises(ModelLoadError, match=r"not a PyTorch model file.*TorchScript"):
        load_model(str(path))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty.pt"):
        load_model(str(empty))


def test_unknown_scheme_and_missing_file(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model("hf:google/vit-base")
    assert "unknown model source scheme 'hf'" in str(err.value) and "timm:<name>:random" in str(err.value)
    with pytest.raises(ModelLoadError, match="unknown model source 'resnet'"):
        load_model("resnet")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope.pt"))
    with pytest.raises(ModelLoadError, match="no model source"):
        load_model("  ")
    with pytest.raises(ModelLoadError, match="without a config.json"):
        load_model(str(tmp_path))


def test_input_shape_parsing():
    assert parse_input_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_input_shape("1x3x32x32") == (1, 3, 32, 32)
    assert parse_input_shape([1, 1, 28, 28]) == (1, 1, 28, 28)
    for bad in ("", "1,0,3", "a,b", "7"):
        with pytest.raises(ModelLoadError, match="input-shape"):
            parse_input_shape(bad)


def test_file_with_wrong_input_shape(tmp_path):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(_small_cnn()), str(path))
    with pytest.raises(ModelLoadError, match=r"does not run on an input of shape \(1, 1, 8, 8\)"):
        load_model(str(path), input_shape=(1, 1, 8, 8))


# --- timm ----------------------------------------------------------------------------------------

@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Point every model cache at an empty folder, so 'pretrained' must fail without a download."""
    for var in ("HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_timm_vit_random_is_seeded():
    a = load_model("timm:deit_tiny_patch16_224:random")
    assert a.kind == "timm" and a.input_shape == (1, 3, 224, 224) and a.num_classes == 1000
    assert a.name == "timm:deit_tiny_patch16_224:random" and not a.module.training
    b = load_model("timm:deit_tiny_patch16_224:random")
    assert torch.equal(a.module.blocks[0].attn.qkv.weight, b.module.blocks[0].attn.qkv.weight)
    assert a.input_mean is not None and len(a.input_mean) == 3


def test_timm_conv_random_runs():
    loaded = load_model("timm:mobilenetv3_small_050:random")
    assert loaded.input_shape == (1, 3, 224, 224)
    with torch.no_grad():
        assert loaded.module(loaded.example_input(2)).shape == (2, loaded.num_classes)


def test_timm_pretrained_missing_from_cache(empty_caches):
    with pytest.raises(ModelLoadError) as err:
        load_model("timm:deit_tiny_patch16_224")
    text = str(err.value)
    assert "not in the local cache" in text and "timm:deit_tiny_patch16_224:random" in text
    assert "pretrained=True" in text and str(empty_caches) in text


def test_timm_pretrained_from_local_hf_cache(empty_caches):
    """A cache laid out like huggingface_hub's is used, offline; its weights are the ones loaded."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(7)
    donor = timm.create_model("mobilenetv3_small_050")
    repo = empty_caches / "hf_home" / "hub" / "models--timm--mobilenetv3_small_050.lamb_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": "mobilenetv3_small_050"}))
    loaded = load_model("timm:mobilenetv3_small_050")
    assert loaded.metadata["pretrained"] and loaded.metadata["weights_file"].endswith("model.safetensors")
    assert torch.equal(loaded.module.conv_stem.weight, donor.conv_stem.weight)


def test_timm_bad_names():
    with pytest.raises(ModelLoadError, match="Did you mean.*deit_tiny_patch16_224"):
        load_model("timm:deit_tiny_patch16_22:random")
    with pytest.raises(ModelLoadError, match="timm:<name>:random"):
        load_model("timm:deit_tiny_patch16_224:pretrained")
