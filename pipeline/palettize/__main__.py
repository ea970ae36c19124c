"""`python -m pipeline.palettize`: palettize a model, print the report and accuracy, save palettes.

    python -m pipeline.palettize --model default --clusters 64 --out out/palettes
    python -m pipeline.palettize --model timm:deit_tiny_patch16_224:random --int8-grid --out out/deit

Writes ``DIR/palettes.safetensors`` (palettes + resolved config) and ``DIR/report.json``
(accuracy before/after on the default model's test split, output fidelity, per-tensor table,
totals, config, timings). Command-line flags override the values of ``--config YAML``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.cli_support import is_interactive, run_cli
from pipeline.errors import ConfigError, OutputError

PALETTES_FILE = "palettes.safetensors"
REPORT_FILE = "report.json"
REPORT_SCHEMA_VERSION = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.palettize",
        description="Cluster each weight tensor into a k-entry palette (exact 1-D k-means) and report "
        "what it costs in accuracy and what it saves in bytes.",
    )
    p.add_argument("--model", default="default",
                   help="default | timm:<name>[:random] | a torch.save / TorchScript / torch.export file")
    p.add_argument("--out", required=True, type=Path, help="folder for palettes.safetensors and report.json")
    p.add_argument("--config", type=Path, help="YAML with PalettizeConfig fields (flags override it)")
    p.add_argument("--clusters", type=int, help="centroids per palette, 2..256 (default 64)")
    p.add_argument("--granularity", help="per_tensor (default) | per_channel_group")
    p.add_argument("--group-size", type=int, help="output channels per codebook (per_channel_group)")
    p.add_argument("--init", help="Lloyd start: kmeans++ | linear | density | quantile")
    p.add_argument("--algorithm", help="optimal (exact 1-D k-means, default) | lloyd")
    p.add_argument("--int8-grid", action="store_true", default=None,
                   help="centroids on each output channel's symmetric int8 grid (for palette-int8 export)")
    p.add_argument("--sensitivity", help="weight k-means by an importance estimate from calibration inputs: "
                   "none (default) | fisher | activation | output (activation scaled per layer by the "
                   "measured output error: the best budgets)")
    p.add_argument("--assignment", help="nearest (default) | gptq: assign columns with error feedback and refit "
                   "the codebook on calibration inputs")
    p.add_argument("--target-bits", type=float, help="choose clusters and codebook granularity per layer under "
                   "this average bits per weight, codebooks included (e.g. 6)")
    p.add_argument("--data", default="auto", help="calibration inputs for --sensitivity / --assignment gptq: "
                   "auto | default | images | sentences | random | file:PATH (default auto)")
    p.add_argument("--calibration", type=int, default=128, help="calibration inputs to use (default 128)")
    p.add_argument("--augment", type=int, default=0,
                   help="add this many augmented inputs (crops of the calibration photos, changed sentences) "
                   "to the calibration batch (default 0)")
    p.add_argument("--tune-epochs", type=int, help="after clustering, tune the int8 scales (or codebooks) end to "
                   "end on calibration inputs for N epochs, every index kept (default 0: off)")
    p.add_argument("--tune-lr", type=float, help="learning rate of --tune-epochs (default 0.001)")
    p.add_argument("--tune-inputs", type=int, default=4096,
                   help="augmented calibration inputs --tune-epochs tunes on (default 4096)")
    p.add_argument("--weight-threshold", type=int, help="tensors with fewer elements stay dense (default 2048)")
    p.add_argument("--module-types", help="comma-separated module class names (default Linear,Conv2d)")
    p.add_argument("--include", action="append", help="regex of parameter names to cluster (repeatable)")
    p.add_argument("--exclude", action="append", help="regex of parameter names to leave dense (repeatable)")
    p.add_argument("--seed", type=int, help="seed for Lloyd's kmeans++ start (default 0)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow loading a pickled torch.save file (runs code from the file: trusted files only)")
    p.add_argument("--input-shape", help="e.g. 1,3,224,224 for model files that do not say it")
    p.add_argument("--eval-batch", type=int, default=16,
                   help="rows of the seeded random batch used for output fidelity of non-default models")
    p.add_argument("--eval-samples", type=int,
                   help="score only the first N test images of the default model (default: all)")
    return p


def resolve_config(args: argparse.Namespace):
    """YAML (if any), then the flags given on the command line, validated as one PalettizeConfig."""
    from pipeline.palettize.config import PalettizeConfig

    data: dict[str, Any] = PalettizeConfig.from_yaml(args.config).to_dict() if args.config else {}
    flags = {
        "clusters": args.clusters, "granularity": args.granularity, "group_size": args.group_size,
        "init": args.init, "algorithm": args.algorithm, "int8_grid": args.int8_grid,
        "weight_threshold": args.weight_threshold, "include": args.include, "exclude": args.exclude,
        "seed": args.seed, "sensitivity": args.sensitivity, "assignment": args.assignment,
        "target_bits": args.target_bits, "tune_epochs": args.tune_epochs, "tune_lr": args.tune_lr,
        "module_types": [t.strip() for t in args.module_types.split(",") if t.strip()]
        if args.module_types else None,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.granularity == "per_tensor" and args.group_size is None:
        data["group_size"] = None  # a YAML group size does not outlive switching to per_tensor
    return PalettizeConfig.from_dict(data)


def check_out_dir(out: Path) -> bool:
    """Fail early (before any work) when ``out`` cannot become a writable folder.

    Returns whether the folder exists already (if not, it is created only when writing).
    """
    out = out.expanduser()
    hint = "Choose an --out folder you can write to."
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"--out {out} exists and is not a folder", next_step=hint, path=str(out))
        if not _can_write_in(out):
            raise OutputError(f"--out folder {out} is not writable", next_step=hint, path=str(out))
        return True
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create --out {out}: {parent} is a file, not a folder", next_step=hint,
                          path=str(out))
    if not _can_write_in(parent):
        raise OutputError(f"cannot create --out {out}: {parent} is not writable", next_step=hint, path=str(out))
    return False


def _can_write_in(folder: Path) -> bool:
    """A real write (os.access says yes to root even on read-only or virtual file systems)."""
    import tempfile

    try:
        probe = tempfile.mkdtemp(prefix=".write-test-", dir=folder)
        os.rmdir(probe)
        return True
    except OSError:
        return False


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _progress_bar():
    """(callback, stop) drawing a rich bar on interactive terminals, no-ops otherwise."""
    if not is_interactive():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    bar.start()
    task = bar.add_task("palettizing", total=None)

    def update(name: str, done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, description=f"palettizing {name}"[:60])

    return update, bar.stop


def evaluate(loaded, palettized_module, eval_batch: int, eval_samples: int | None = None) -> tuple[dict, dict]:
    """(accuracy, fidelity): test-split top-1 for the default model; fidelity for every model.

    Each model runs once over the batch; accuracy and fidelity are both read off those logits.
    """
    from pipeline.evaluate import output_fidelity, predict_logits, top1_accuracy

    if loaded.name == "default":
        from pipeline.data import load_default_dataset

        x, y = load_default_dataset("test")
        if eval_samples is not None:
            x, y = x[:eval_samples], y[:eval_samples]
        ref = predict_logits(loaded.module, x)
        cand = predict_logits(palettized_module, x)
        dense, pal = top1_accuracy(ref, x, y), top1_accuracy(cand, x, y)
        accuracy = {"dense": dense, "palettized": pal, "delta": pal - dense, "split": "test", "samples": int(len(y))}
        fidelity = dict(output_fidelity(ref, cand, x))
        fidelity.update({"input": "default model test split", "samples": int(len(y))})
    else:
        x = loaded.example_input(batch=eval_batch, seed=0).numpy()
        accuracy = {"dense": None, "palettized": None, "delta": None, "split": None, "samples": 0}
        # traced and exported graphs may be specialised to the batch size they were made with
        step = 1 if getattr(loaded, "kind", "") in ("torchscript", "exported_program") else 256
        fidelity = dict(output_fidelity(loaded.module, palettized_module, x, batch_size=step))
        fidelity.update({"input": f"seeded standard-normal batch (seed 0, {eval_batch} rows)",
                         "samples": int(eval_batch)})
    return accuracy, fidelity


def write_outputs(out: Path, existed: bool, palettes, config, report_doc: dict) -> None:
    """palettes.safetensors and report.json, each via a temp name + rename; nothing left on failure."""
    from pipeline.palettize.palette import _atomic_write, save_palettes

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create --out {out}: {err.strerror or err}",
                          next_step="Choose an --out folder you can write to.", path=str(out)) from None
    try:
        save_palettes(out / PALETTES_FILE, palettes, config)
        text = json.dumps(_jsonable(report_doc), indent=2, sort_keys=False) + "\n"
        _atomic_write(out / REPORT_FILE, text.encode("utf-8"))
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--eval-batch", args.eval_batch), ("--eval-samples", args.eval_samples),
                        ("--calibration", args.calibration), ("--tune-inputs", args.tune_inputs)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer (got {value})",
                              next_step=f"Give {flag} a number >= 1.")
    t0 = time.perf_counter()
    config = resolve_config(args)
    out = args.out.expanduser()
    existed = check_out_dir(out)

    from rich.console import Console

    from pipeline.palettize.apply import bits_per_weight, palettize
    from pipeline.sources import load_model

    console = Console() if is_interactive() else Console(width=150)  # logs: no wrapped columns
    loaded = load_model(args.model, allow_pickle=args.allow_pickle, input_shape=args.input_shape)
    calibration = tuning = None
    if config.needs_calibration:
        from pipeline.fidelity.data import load_data

        data = load_data(args.data, loaded, calibration=args.calibration,
                         tuning=args.tune_inputs if config.tune_epochs else 0, augment=args.augment)
        calibration, tuning = data.calibration, data.tuning
        console.print(f"calibration: {len(calibration)} inputs from --data {data.name}"
                      + (f"; tuning on {len(tuning)} augmented ones" if tuning is not None else ""))
    t_load = time.perf_counter()
    progress, stop = _progress_bar()
    try:
        result = palettize(loaded.module, config, calibration=calibration, tuning=tuning, progress=progress)
    finally:
        stop()
    t_pal = time.perf_counter()
    accuracy, fidelity = evaluate(loaded, result.model, args.eval_batch, args.eval_samples)
    t_eval = time.perf_counter()

    result.report.render(console)
    if accuracy["dense"] is not None:
        console.print(
            f"top-1 accuracy on the default model's test split ({accuracy['samples']} images): "
            f"dense {accuracy['dense']:.4f} -> palettized {accuracy['palettized']:.4f} "
            f"({100 * accuracy['delta']:+.2f} points)"
        )
    console.print(
        "output fidelity on " + fidelity["input"] + ": "
        + ", ".join(f"{k} {v:.4g}" for k, v in fidelity.items() if isinstance(v, float))
    )
    report = result.report.to_dict()
    doc = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model": {"source": loaded.source, "name": loaded.name, "input_shape": list(loaded.input_shape),
                  "num_classes": loaded.num_classes},
        "config": config.to_dict(),
        "budget": None if result.budget is None else result.budget.to_dict(),
        "tune": None if result.tune is None else result.tune.to_dict(),
        "accuracy": accuracy,
        "fidelity": fidelity,
        "bits_per_weight": bits_per_weight(result.palettes),
        "tensors": report["tensors"],
        "skipped": report["skipped"],
        "totals": report["totals"],
        "timings_s": {"load": t_load - t0, "palettize": t_pal - t_load, "evaluate": t_eval - t_pal},
        "files": {"palettes": PALETTES_FILE},
    }
    write_outputs(out, existed, result.palettes, result.config or config, doc)
    console.print(f"wrote {out / PALETTES_FILE} and {out / REPORT_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
