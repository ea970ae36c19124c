"""Skip units: found by structure in three block families; skipping removes exactly one branch."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.dynamic.search import FlopTable, count_flops
from pipeline.dynamic.skip import (
    ZeroBranch,
    apply_skips,
    config_key,
    find_units,
    normalize_config,
    skipped_units,
)
from pipeline.errors import ConfigError, NothingToDoError


@pytest.fixture(scope="module")
def mixvit():
    from pipeline.models.mixvit import MixViT, MixViTConfig

    torch.manual_seed(3)
    return MixViT(MixViTConfig(embed_dim=32, depth=3, num_heads=2, num_classes=7)).eval()


@pytest.fixture(scope="module")
def deit():
    """timm's DeiT-Tiny architecture, random weights, at 32x32 input (4 patches) to stay fast."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=10).eval()


@pytest.fixture(scope="module")
def segformer():
    from transformers import SegformerConfig, SegformerForImageClassification

    cfg = SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[2, 1], sr_ratios=[2, 1],
                          hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                          mlp_ratios=[2, 2], num_labels=5, image_size=32)
    torch.manual_seed(0)
    return SegformerForImageClassification(cfg).eval()


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


def _blocks(model, units):
    return {u.block: model.get_submodule(u.block) for u in units}


def _other_branch(block, unit, x, hw):
    """What the non-skipped branch of ``block`` adds to ``x`` (eval mode: dropout/drop-path are identity)."""
    if unit.family == "segformer":
        if unit.kind == "attn":
            return block.drop_path(block.mlp(block.layernorm_after(x), *hw))
        return block.drop_path(block.attention(block.layernorm_before(x), *hw)[0])
    ident = torch.nn.Identity()
    if unit.kind == "attn":
        branch = block.mlp(block.norm2(x))
        return getattr(block, "drop_path2", ident)(getattr(block, "ls2", ident)(branch))
    branch = block.attn(block.norm1(x))
    return getattr(block, "drop_path1", ident)(getattr(block, "ls1", ident)(branch))


def _record_blocks(model, units):
    """Forward hooks recording (input, extra args, output) of every block."""
    seen: dict[str, tuple] = {}
    handles = []
    for name, block in _blocks(model, units).items():
        def hook(mod, args, out, name=name):
            seen[name] = (args[0].detach().clone(), args[1:], (out[0] if isinstance(out, tuple) else out).detach())
        handles.append(block.register_forward_hook(hook))
    return seen, handles


def _check_only_that_block(model, units, skip_name, x):
    unit = next(u for u in units if u.name == skip_name)
    skipped = apply_skips(model, {skip_name}, units)
    full_seen, h1 = _record_blocks(model, units)
    skip_seen, h2 = _record_blocks(skipped, units)
    with torch.no_grad():
        full_out = _logits(model(x))
        skip_out = _logits(skipped(x))
    for h in h1 + h2:
        h.remove()
    order = [u.block for u in units if u.kind == "attn"]
    for block_name in order[: order.index(unit.block)]:        # blocks before: untouched
        assert torch.equal(full_seen[block_name][2], skip_seen[block_name][2]), block_name
    xin, extra, out = skip_seen[unit.block]
    block = skipped.get_submodule(unit.block)
    with torch.no_grad():
        expected = xin + _other_branch(block, unit, xin, extra)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert isinstance(getattr(block, unit.branch_attr), ZeroBranch)
    assert not torch.equal(full_out, skip_out), "skipping a branch of a random model should change its output"


def test_default_mixvit_units_are_attention_and_mlp_of_each_block(mixvit) -> None:
    units = find_units(mixvit)
    assert [u.name for u in units] == [f"blocks.{i}.{k}" for i in range(3) for k in ("attn", "mlp")]
    assert {u.family for u in units} == {"prenorm"}
    assert [u.index for u in units] == [0, 0, 1, 1, 2, 2]


def test_skipping_nothing_reproduces_the_dense_outputs_exactly(mixvit, deit, segformer) -> None:
    for model, shape in ((mixvit, (3, 1, 28, 28)), (deit, (2, 3, 32, 32)), (segformer, (2, 3, 32, 32))):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        same = apply_skips(model, set())
        assert same is not model
        with torch.no_grad():
            assert torch.equal(_logits(same(x)), _logits(model(x)))


def test_skipping_a_unit_changes_only_that_blocks_contribution_mixvit(mixvit) -> None:
    units = find_units(mixvit)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    for name in ("blocks.0.attn", "blocks.1.mlp", "blocks.2.attn", "blocks.2.mlp"):
        _check_only_that_block(mixvit, units, name, x)


def test_timm_deit_units_found_and_applied(deit) -> None:
    units = find_units(deit)
    assert len(units) == 24 and units[0].name == "blocks.0.attn" and units[-1].name == "blocks.11.mlp"
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    _check_only_that_block(deit, units, "blocks.5.attn", x)
    _check_only_that_block(deit, units, "blocks.0.mlp", x)


def test_segformer_layers_found_and_applied(segformer) -> None:
    units = find_units(segformer)
    assert [u.kind for u in units] == ["attn", "mlp"] * 3
    assert all(u.family == "segformer" for u in units)
    assert units[0].name.endswith("blocks.0.attention")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    _check_only_that_block(segformer, units, units[0].name, x)
    _check_only_that_block(segformer, units, units[3].name, x)
    everything = apply_skips(segformer, [u.name for u in units])
    with torch.no_grad():
        assert _logits(everything(x)).shape == (2, 5)


def test_the_input_model_is_untouched_and_skips_are_recorded(mixvit) -> None:
    before = copy.deepcopy(mixvit.state_dict())
    out = apply_skips(mixvit, ["blocks.1.attn", "blocks.0.mlp"])
    assert skipped_units(out) == {"blocks.1.attn", "blocks.0.mlp"}
    assert skipped_units(mixvit) == frozenset()
    after = mixvit.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # the skipped branch's weights and its private pre-norm are gone from the copy
    names = {n for n, _ in out.named_parameters()}
    assert not any(n.startswith(("blocks.1.attn.", "blocks.1.norm1.", "blocks.0.mlp.", "blocks.0.norm2."))
                   for n in names)
    assert "blocks.1.mlp.fc1.weight" in names


def test_unknown_units_and_unknown_architectures_are_readable_errors(mixvit) -> None:
    units = find_units(mixvit)
    with pytest.raises(ConfigError, match=r"unknown skip unit\(s\) blocks\.9\.attn.*Known units.*blocks\.0\.attn"):
        apply_skips(mixvit, {"blocks.9.attn"}, units)
    assert normalize_config("blocks.0.attn, blocks.1.mlp", units) == {"blocks.0.attn", "blocks.1.mlp"}
    assert config_key(set()) == "full" and config_key({"b", "a"}) == "a+b"
    with pytest.raises(NothingToDoError, match="no skippable blocks found in Sequential"):
        find_units(torch.nn.Sequential(torch.nn.Linear(3, 3)))


def test_flops_of_a_configuration_are_the_full_minus_the_skipped_units(mixvit) -> None:
    for model, shape in ((mixvit, (1, 1, 28, 28)),):
        units = find_units(model)
        x = torch.randn(shape)
        table = FlopTable(model, units, x)
        assert all(v > 0 for v in table.unit_flops.values())
        config = {units[0].name, units[-1].name, units[1].name}
        assert table(config) == count_flops(apply_skips(model, config, units), x) < table.full
