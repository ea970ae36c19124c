"""``python -m pipeline.fidelity --model SOURCE --data SOURCE --clusters 64 [...]``.

Prints one row per configuration: bits per weight (codebooks included), output agreement with the
dense model (top-1/top-5 for classifiers, cosine and nearest-neighbour agreement for encoders,
correlation for other outputs) and accuracy where the data is labelled. The dense model and int8
per-channel (round to nearest) are always measured as references; then a palette with
``--clusters`` at ``--granularity``, and, with ``--target-bits``, a budgeted palette; all of them
with ``--sensitivity``-weighted k-means, ``--assignment gptq`` and ``--int8-grid`` as asked. ``--json``
writes every number to a file (temp name + rename).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli_support import run_cli
from pipeline.errors import ConfigError, OutputError


def _clusters(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--clusters must be integers separated by commas (got {text!r})") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.fidelity", description=__doc__.split("\n\n")[1])
    p.add_argument("--model", default="default", help="model source (default, efficientnet_lite0, "
                   "sentence-transformers:all-MiniLM-L6-v2, timm:NAME, a file)")
    p.add_argument("--data", default="auto", help="auto | default | images | sentences | random | file:PATH")
    p.add_argument("--clusters", type=_clusters, default=[64], help="clusters per codebook; several: 16,32,64")
    p.add_argument("--granularity", default="per_tensor", choices=["per_tensor", "per_channel_group"])
    p.add_argument("--group-size", type=int, default=None, help="output channels per codebook (grouped)")
    p.add_argument("--target-bits", type=float, default=None,
                   help="also measure a per-layer budget at this average bits per weight (codebooks included)")
    p.add_argument("--sensitivity", default="none", choices=["none", "fisher", "activation", "output"],
                   help="weight k-means (and budgets) by this importance estimate")
    p.add_argument("--assignment", default="nearest", choices=["nearest", "gptq"],
                   help="nearest centroid, or GPTQ error feedback with a codebook refit (needs calibration)")
    p.add_argument("--int8-grid", action="store_true",
                   help="centroids on each output channel's int8 grid (what palette-int8 exports)")
    p.add_argument("--algorithm", default="optimal", choices=["optimal", "lloyd"])
    p.add_argument("--weight-threshold", type=int, default=2048)
    p.add_argument("--samples", type=int, default=None, help="evaluate on at most this many inputs")
    p.add_argument("--calibration", type=int, default=128,
                   help="calibration inputs for sensitivities and GPTQ (disjoint from the evaluation set)")
    p.add_argument("--augment", type=int, default=0,
                   help="add this many augmented calibration inputs (crops of the calibration photos, changed "
                   "sentences) to the calibration batch")
    p.add_argument("--tune-epochs", type=int, default=0,
                   help="tune the palettes' scales (int8 grid) or codebooks end to end for this many epochs")
    p.add_argument("--tune-lr", type=float, default=1e-3, help="learning rate of the tuning")
    p.add_argument("--tune-inputs", type=int, default=4096,
                   help="augmented calibration inputs to tune on (with --tune-epochs)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickled model files")
    return p


def variants_from_args(args: argparse.Namespace) -> list:
    from pipeline.fidelity.measure import Method, Variant

    out = [Variant(Method.DENSE), Variant(Method.INT8)]
    if args.granularity == "per_channel_group" and args.group_size is None:
        raise ConfigError("--granularity per_channel_group needs --group-size",
                          next_step="Add e.g. --group-size 16.", field="group_size")
    for k in args.clusters:
        out.append(Variant(Method.PALETTE, clusters=k, granularity=args.granularity,
                           group_size=args.group_size if args.granularity == "per_channel_group" else None,
                           sensitivity=args.sensitivity, assignment=args.assignment, int8_grid=args.int8_grid,
                           tune_epochs=args.tune_epochs))
    if args.target_bits is not None:
        out.append(Variant(Method.BUDGET, target_bits=args.target_bits, sensitivity=args.sensitivity,
                           assignment=args.assignment, int8_grid=args.int8_grid, tune_epochs=args.tune_epochs))
    return out


def _write_json(path: Path, payload: dict) -> None:
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}",
                          next_step="Choose a writable --json path.", path=str(path)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from pipeline.fidelity.data import load_data
    from pipeline.fidelity.measure import format_table, run_fidelity
    from pipeline.palettize.config import PalettizeConfig

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1 (got {args.threads})", field="threads")
    torch.set_num_threads(args.threads)
    base = PalettizeConfig(algorithm=args.algorithm, weight_threshold=args.weight_threshold, seed=args.seed,
                           tune_epochs=args.tune_epochs, tune_lr=args.tune_lr)
    variants = variants_from_args(args)
    loaded = _load(args.model, args.allow_pickle)
    data = load_data(args.data, loaded, samples=args.samples, calibration=args.calibration, seed=args.seed,
                     tuning=args.tune_inputs if args.tune_epochs else 0, augment=args.augment)

    def log(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    print(f"model: {loaded.name}   data: {data.description}   torch threads: {args.threads}", flush=True)
    task, rows = run_fidelity(loaded, data, variants, base=base, log=log)
    print(format_table(task, rows, labelled=data.y is not None))
    if args.json is not None:
        _write_json(args.json, {"model": loaded.name, "data": data.description, "task": task,
                                "rows": [r.to_dict() for r in rows]})
    return 0


def _load(source: str, allow_pickle: bool):
    """Any model source `pipeline.sources` knows (packaged pretrained ones included)."""
    from pipeline.sources import load_model

    return load_model(source, allow_pickle=allow_pickle)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
