"""MixViT: a small vision transformer shaped like the models this tool is for.

It is the bundled default model. Each block is a pre-norm transformer block whose MLP is a
SegFormer Mix-FFN (Linear -> 3x3 depthwise Conv2d -> GELU -> Linear), so palettization meets both
Linear and Conv2d weights, and dynamic execution can skip either branch:

    x = x + block.attn(block.norm1(x))     # attention branch
    x = x + block.mlp(block.norm2(x))      # Mix-FFN branch

The submodule names (``patch_embed``, ``blocks[i].norm1/attn/norm2/mlp``, ``norm``, ``head``)
follow timm's ViT so code written for timm blocks works here too. The token grid is fixed by the
config (the Mix-FFN needs it to fold tokens back into an image), so the model takes exactly one
input size; ``MixViT.input_shape`` says which.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class MixViTConfig:
    """Architecture hyper-parameters (saved as ``config.json`` beside the weights)."""

    img_size: int = 28
    in_chans: int = 1
    patch_kernel: int = 7      # overlapping patch embedding, as in SegFormer
    patch_stride: int = 4
    embed_dim: int = 128
    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 10
    pos_embed: bool = True

    def __post_init__(self) -> None:
        for name in ("img_size", "in_chans", "patch_kernel", "patch_stride", "embed_dim", "depth",
                     "num_heads", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"MixViTConfig.{name} must be a positive integer, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"MixViTConfig.embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if not self.mlp_ratio > 0:
            raise ConfigError(f"MixViTConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if self.grid_size < 1:
            raise ConfigError(
                f"MixViTConfig: img_size {self.img_size} is too small for patch_kernel {self.patch_kernel}"
            )

    @property
    def padding(self) -> int:
        return self.patch_kernel // 2

    @property
    def grid_size(self) -> int:
        """Tokens per side after the patch embedding."""
        return (self.img_size + 2 * self.padding - self.patch_kernel) // self.patch_stride + 1

    @property
    def hidden_dim(self) -> int:
        return int(round(self.embed_dim * self.mlp_ratio))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MixViTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown MixViT config keys {unknown}", next_step=f"Allowed keys: {sorted(known)}."
            )
        return cls(**data)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided Conv2d, then LayerNorm over channels."""

    def __init__(self, cfg: MixViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_kernel, stride=cfg.patch_stride,
                              padding=cfg.padding)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)                      # (B, C, H, W)
        x = x.flatten(2).transpose(1, 2)      # (B, N, C)
        return self.norm(x)


class Attention(nn.Module):
    """Multi-head self-attention written out (matmul, softmax) so every exporter handles it."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class MixFFN(nn.Module):
    """SegFormer Mix-FFN: Linear -> 3x3 depthwise Conv2d on the token grid -> GELU -> Linear."""

    def __init__(self, dim: int, hidden_dim: int, grid_size: int) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.fc1(x)
        c = x.shape[-1]
        x = x.transpose(1, 2).reshape(b, c, self.grid_size, self.grid_size)
        x = self.dwconv(x)
        x = x.flatten(2).transpose(1, 2)
        x = self.act(x)
        return self.fc2(x)


class Block(nn.Module):
    """Pre-norm block; the two residual adds live here so either branch can be skipped."""

    def __init__(self, cfg: MixViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.embed_dim)
        self.mlp = MixFFN(cfg.embed_dim, cfg.hidden_dim, cfg.grid_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class MixViT(nn.Module):
    """Patch embedding, ``depth`` blocks, final LayerNorm, mean-pooled tokens, linear classifier."""

    def __init__(self, cfg: MixViTConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MixViTConfig()
        self.num_classes = cfg.num_classes
        self.patch_embed = PatchEmbed(cfg)
        num_tokens = cfg.grid_size * cfg.grid_size
        if cfg.pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, cfg.embed_dim))
        else:
            self.register_parameter("pos_embed", None)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.reset_parameters()

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Batch-1 NCHW input shape this model accepts."""
        return (1, self.cfg.in_chans, self.cfg.img_size, self.cfg.img_size)

    def reset_parameters(self) -> None:
        """ViT-style init: truncated normal (std 0.02) for Linear, fan-out normal for Conv2d."""
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=1))
