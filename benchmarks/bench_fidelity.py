"""Fidelity table: per-tensor, grouped and sensitivity-budgeted palettes next to int8 per-channel.

    .venv/bin/python -m benchmarks.bench_fidelity [--model efficientnet_lite0] [--data auto]
        [--clusters 16,32,64,128] [--group-size 16] [--sensitivity activation,output] [--no-gptq] [--samples N]
        [--augment N] [--tune-epochs N [--tune-inputs 4096]] [--json out.json]

For each cluster count k, in ONE run on the same inputs: a per-tensor palette with k clusters, a
grouped palette (k clusters per group of ``--group-size`` output channels; its codebooks cost extra
bits, counted), and for each ``--sensitivity`` two budgeted palettes (per-layer cluster counts and
granularity chosen from that sensitivity's estimates on a disjoint calibration batch, under an
average of log2(k) bits per weight, codebooks included): nearest-centroid, and GPTQ on the int8
grid (the palette-int8 export's form); plus the dense model and int8 per-channel round-to-nearest
as references; with ``--tune-epochs``, each GPTQ row also gets a twin whose int8 scales are
tuned end to end on augmented calibration inputs (`pipeline.palettize.tune`). Prints bits per weight, agreement with the dense model and accuracy where labelled.
Host CPU only; the machine, threads and load average are printed. Not a test.

The models used in the project's figures: ``efficientnet_lite0`` (natural photos from
scikit-image, crops and mirrors), ``sentence-transformers:all-MiniLM-L6-v2`` (standard-library
docstring sentences), ``default`` (its labelled test split).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_fidelity")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--data", default="auto")
    p.add_argument("--clusters", default="16,32,64,128")
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--sensitivity", default="activation,output",
                   help="comma-separated sensitivities to budget with, one set of budget rows each: "
                   "none, fisher, activation, output (default activation,output)")
    p.add_argument("--algorithm", default="optimal", choices=["optimal", "lloyd"],
                   help="k-means for per-tensor and budgeted palettes")
    p.add_argument("--grouped-algorithm", default="lloyd", choices=["optimal", "lloyd"],
                   help="k-means for the fixed-k grouped palettes (the exact DP over many small groups "
                   "takes minutes per model)")
    p.add_argument("--no-gptq", action="store_true", help="leave out the GPTQ budget rows (faster)")
    p.add_argument("--samples", type=int, default=None, help="evaluate on at most this many inputs (default all)")
    p.add_argument("--calibration", type=int, default=1024,
                   help="calibration inputs, at most (default 1024; the image source has 176 views in all)")
    p.add_argument("--augment", type=int, default=0,
                   help="add this many augmented calibration inputs to the calibration batch")
    p.add_argument("--tune-epochs", type=int, default=0,
                   help="also a tuned twin of every GPTQ row: int8 scales tuned end to end for N epochs")
    p.add_argument("--tune-inputs", type=int, default=4096, help="augmented calibration inputs to tune on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    from pipeline.fidelity.__main__ import _load
    from pipeline.fidelity.data import load_data
    from pipeline.fidelity.measure import Method, Variant, format_table, run_fidelity
    from pipeline.palettize.config import PalettizeConfig

    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.clusters.split(",")]
    sensitivities = [m.strip() for m in args.sensitivity.split(",") if m.strip()]
    allowed = ("none", "fisher", "activation", "output")
    if not sensitivities or any(m not in allowed for m in sensitivities):
        p.error(f"--sensitivity takes a comma-separated list of {', '.join(allowed)} (got {args.sensitivity!r})")
    variants = [Variant(Method.DENSE), Variant(Method.INT8)]
    for k in ks:
        variants.append(Variant(Method.PALETTE, clusters=k))
        variants.append(Variant(Method.PALETTE, clusters=k, granularity="per_channel_group",
                                group_size=args.group_size, algorithm=args.grouped_algorithm))
        for method in sensitivities:
            variants.append(Variant(Method.BUDGET, target_bits=math.log2(k), sensitivity=method))
            if not args.no_gptq:
                variants.append(Variant(Method.BUDGET, target_bits=math.log2(k), sensitivity=method,
                                        assignment="gptq", int8_grid=True))
                if args.tune_epochs:
                    variants.append(Variant(Method.BUDGET, target_bits=math.log2(k), sensitivity=method,
                                            assignment="gptq", int8_grid=True, tune_epochs=args.tune_epochs))
    loaded = _load(args.model, False)
    data = load_data(args.data, loaded, samples=args.samples, calibration=args.calibration,
                     tuning=args.tune_inputs if args.tune_epochs else 0, augment=args.augment)
    print(f"# bench_fidelity  host: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}, torch threads {args.threads}, CPU only, not simulated")
    print(f"# model: {loaded.name}   data: {data.description}   evaluated: {len(data.x)}   "
          f"calibration: {len(data.calibration)}   k-means: {args.algorithm}"
          + (f"   tuning inputs: {len(data.tuning)}" if data.tuning is not None else ""))
    t0 = time.perf_counter()
    task, rows = run_fidelity(loaded, data, variants, base=PalettizeConfig(algorithm=args.algorithm),
                              log=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    print(format_table(task, rows, labelled=data.y is not None))
    print(f"# {time.perf_counter() - t0:.0f} s in all")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"model": loaded.name, "data": data.description, "task": task,
                       "rows": [r.to_dict() for r in rows]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
