"""Skip units: find the attention and MLP branches of residual blocks, and switch them off.

A unit is one residual branch of one block, named by the qualified name of the branch module
(``"blocks.2.attn"``, ``"blocks.0.mlp"``, ``"segformer.encoder.block.1.0.attention"``). Skipping
it keeps the residual path: the block computes ``x + 0`` for that branch, i.e. only the other
branch contributes.

Blocks are recognised by structure, not by editing their classes. A *family* says which child
is the branch, which pre-norm (and layer-scale) feeds only that branch, and what the branch
returns:

- ``prenorm``: timm-style pre-norm blocks ``x + [drop_path(ls(]attn(norm1(x))[))]`` and
  ``x + ... mlp(norm2(x))``: the default MixViT ``Block`` and ``timm.models.vision_transformer.Block``
  (ViT, DeiT);
- ``segformer``: Hugging Face ``SegformerLayer`` (``attention`` returns a tuple and takes the
  token grid's height/width; ``mlp`` is the Mix-FFN).

Applying a configuration swaps the branch for :class:`ZeroBranch` (zeros of the branch's output
shape, no weights, no control flow) and its private pre-norm / layer-scale for ``nn.Identity``,
so neither the branch nor its norm is computed in the exported graph: only a residual add of
zeros is left. The input model is never modified (:func:`apply_skips` works on a deep copy).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipeline.errors import ConfigError, NothingToDoError

ATTN = "attn"
MLP = "mlp"
KINDS = (ATTN, MLP)


@dataclass(frozen=True)
class SkipUnit:
    """One skippable residual branch."""

    name: str                         # qualified name of the branch module, e.g. "blocks.2.attn"
    block: str                        # qualified name of the block, e.g. "blocks.2"
    kind: str                         # "attn" | "mlp"
    branch_attr: str                  # child of the block holding the branch ("attn", "attention", "mlp")
    private_attrs: tuple[str, ...]    # children used only by this branch (pre-norm, layer scale)
    returns_tuple: bool               # the branch returns (tensor, extra) (SegFormer attention)
    family: str                       # "prenorm" | "segformer"
    index: int                        # position of the block in model order (0-based)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"SkipUnit.kind must be one of {KINDS}, got {self.kind!r}")


class ZeroBranch(nn.Module):
    """Stands in for a skipped branch: zeros shaped like its first input; no weights, no control flow.

    The branch's private pre-norm is swapped for Identity at the same time, so the zeros depend on
    the block input only through its shape and the exported graph computes nothing of the branch.
    """

    def __init__(self, returns_tuple: bool = False) -> None:
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, x, *args: Any, **kwargs: Any):
        zeros = torch.zeros_like(x)
        return (zeros, None) if self.returns_tuple else zeros


def _family_of(module: Any) -> str | None:
    """Which block family ``module`` belongs to (None when it is not a recognised block)."""
    from pipeline.models.mixvit import Block as MixBlock

    if isinstance(module, MixBlock):
        return "prenorm"
    timm_vt = sys.modules.get("timm.models.vision_transformer")
    if timm_vt is not None and isinstance(module, timm_vt.Block):
        return "prenorm"
    seg = sys.modules.get("transformers.models.segformer.modeling_segformer")
    if seg is not None and isinstance(module, seg.SegformerLayer):
        return "segformer"
    return None


def _units_of_block(block_name: str, block: Any, family: str, index: int) -> list[SkipUnit]:
    def present(names: Iterable[str]) -> tuple[str, ...]:
        return tuple(n for n in names if hasattr(block, n))

    prefix = f"{block_name}." if block_name else ""
    if family == "prenorm":
        return [
            SkipUnit(f"{prefix}attn", block_name, ATTN, "attn", present(("norm1", "ls1")), False, family, index),
            SkipUnit(f"{prefix}mlp", block_name, MLP, "mlp", present(("norm2", "ls2")), False, family, index),
        ]
    return [
        SkipUnit(f"{prefix}attention", block_name, ATTN, "attention", present(("layernorm_before",)), True,
                 family, index),
        SkipUnit(f"{prefix}mlp", block_name, MLP, "mlp", present(("layernorm_after",)), False, family, index),
    ]


def find_units(model: Any) -> list[SkipUnit]:
    """All skip units of ``model`` in module order (attention before MLP within a block).

    Raises :class:`NothingToDoError` when no block of a known family is found.
    """
    units: list[SkipUnit] = []
    index = 0
    for name, module in model.named_modules():
        family = _family_of(module)
        if family is None:
            continue
        units.extend(_units_of_block(name, module, family, index))
        index += 1
    if not units:
        raise NothingToDoError(
            f"no skippable blocks found in {type(model).__name__}",
            next_step="Dynamic execution knows pre-norm transformer blocks (the default MixViT, timm ViT/DeiT "
                      "Block) and Hugging Face SegformerLayer; other architectures are not supported yet.",
        )
    return units


def normalize_config(config: Iterable[str] | str | None, units: list[SkipUnit]) -> frozenset[str]:
    """A configuration as a frozenset of unit names; unknown names raise a ConfigError listing the units."""
    if config is None:
        return frozenset()
    if isinstance(config, str):
        config = [c for c in config.replace(" ", ",").split(",") if c]
    names = frozenset(str(c) for c in config)
    known = {u.name for u in units}
    unknown = sorted(names - known)
    if unknown:
        shown = ", ".join(sorted(known)[:12]) + (" ..." if len(known) > 12 else "")
        raise ConfigError(f"unknown skip unit(s) {', '.join(unknown)}",
                          next_step=f"Known units of this model: {shown}.")
    return names


def apply_skips(model: Any, config: Iterable[str] | None, units: list[SkipUnit] | None = None) -> Any:
    """A copy of ``model`` (eval mode) with the units in ``config`` skipped; ``model`` is untouched.

    Skipping nothing still returns a copy, whose outputs equal the original's exactly.
    """
    units = units if units is not None else find_units(model)
    names = normalize_config(config, units)
    out = copy.deepcopy(model)
    out.eval()
    by_name = {u.name: u for u in units}
    for name in sorted(names):
        unit = by_name[name]
        block = out.get_submodule(unit.block) if unit.block else out
        if isinstance(getattr(block, unit.branch_attr), ZeroBranch):
            continue
        setattr(block, unit.branch_attr, ZeroBranch(unit.returns_tuple))
        for attr in unit.private_attrs:
            setattr(block, attr, nn.Identity())
    return out


def skipped_units(model: Any) -> frozenset[str]:
    """Names of the units already skipped in ``model`` (by :func:`apply_skips`)."""
    return frozenset(name for name, module in model.named_modules() if isinstance(module, ZeroBranch))


def config_key(config: Iterable[str]) -> str:
    """A stable short text for a configuration: ``"full"`` or the sorted names joined by ``+``."""
    names = sorted(config)
    return "full" if not names else "+".join(names)
