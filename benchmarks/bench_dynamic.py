"""Skip configurations side by side on the host: latency ratio to the full model versus FLOPs ratio.

    .venv/bin/python -m benchmarks.bench_dynamic [--model default] [--model timm:deit_tiny_patch16_224:random]
        [--formats onnx,tflite] [--runs 50] [--threads 1]

For each model a fixed set of configurations (full; every attention branch skipped; every MLP
branch skipped; the second half of the blocks' MLPs skipped; one block's attention) is exported
once, then measured in ONE run, interleaved (round robin over the files, so load on a shared
machine hits every file alike). Printed: FLOPs ratio (analytic, torch's flop counter), host
latency ratio (median of ``--runs`` batch-1 inferences per file), file bytes ratio, all relative
to the full model in the same format. It shows how far measured time follows FLOPs when branches
are skipped (fixed per-op overheads make small models save less time than FLOPs).

Host figures, not phone figures: device, runtime and threads are printed. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _configs(units) -> dict[str, frozenset[str]]:
    attn = [u.name for u in units if u.kind == "attn"]
    mlp = [u.name for u in units if u.kind == "mlp"]
    return {
        "full": frozenset(),
        "one attention (middle block)": frozenset({attn[len(attn) // 2]}),
        "second half of the MLPs": frozenset(mlp[len(mlp) // 2:]),
        "every attention": frozenset(attn),
        "every MLP": frozenset(mlp),
    }


def bench(model_source: str, formats: list[str], runs: int, threads: int) -> None:
    from converters.runtimes import runner_for
    from pipeline.dynamic.export import export_configs
    from pipeline.dynamic.search import FlopTable
    from pipeline.dynamic.skip import find_units
    from pipeline.sources import load_model

    loaded = load_model(model_source)
    module = loaded.module.eval()
    units = find_units(module)
    example = loaded.example_input(1, seed=0)
    flops = FlopTable(module, units, example)
    configs = _configs(units)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_configs(module, units, list(configs.values()), example, Path(tmp), formats=formats,
                                  modes=("dense",), source_model=model_source)
        x = example.numpy().astype(np.float32)
        runners = [runner_for(e.model_file, threads=threads) for e in exported]
        for run in runners:
            for _ in range(5):
                run(x)
        samples: list[list[float]] = [[] for _ in exported]
        for _ in range(runs):
            for i, run in enumerate(runners):
                t0 = time.perf_counter()
                run(x)
                samples[i].append((time.perf_counter() - t0) * 1e3)
        medians = [statistics.median(s) for s in samples]
    names = {v: k for k, v in configs.items()}
    print(f"\n{model_source}: host CPU, {threads} thread(s), batch 1, median of {runs} interleaved runs, dense files")
    print(f"{'format':7} {'configuration':32} {'skipped':>7} {'FLOPs':>7} {'latency':>8} {'bytes':>7}   ms")
    for fmt in formats:
        rows = [(e, m) for e, m in zip(exported, medians, strict=True) if e.format == fmt]
        full_e, full_ms = next((e, m) for e, m in rows if not e.skipped)
        for e, m in rows:
            print(f"{fmt:7} {names[e.skipped]:32} {len(e.skipped):>7} {flops(e.skipped) / flops.full:>7.2f} "
                  f"{m / full_ms:>8.2f} {e.manifest['bytes'] / full_e.manifest['bytes']:>7.2f}   {m:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=None)
    p.add_argument("--formats", default="onnx")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    for source in a.model or ["default"]:
        bench(source, [f for f in a.formats.split(",") if f], a.runs, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
