"""``python -m converters.export``: one verified bundle per format x mode, and a table of what each costs.

Example::

    python -m converters.export --model default --formats onnx,tflite \\
        --modes dense,palette,palette-int8 --clusters 64 --out out/default

Sources: everything ``pipeline.sources.load_model`` accepts (``default``, ``timm:<arch>[:random]``,
model files) plus ``onnx:<path>`` and ``tflite:<path>``, whose float weights are palettized in the
file itself (no PyTorch model). Each bundle goes to ``<out>/<format>-<mode>/``; the table and
``<out>/export_summary.json`` give per bundle: file bytes, ratio to the dense file of the same
format, the verification difference, max |difference| to the original fp32 model and top-1
agreement with it (the default model's test split, else a seeded batch), and host latency
(median of N runs, 1 thread by default) in onnxruntime / LiteRT on this machine's CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from converters.errors import ConfigError, ExportUnavailableError
from converters.modes import ExportFormat, ExportMode, parse_format, parse_mode
from pipeline.cli_support import is_interactive, run_cli
from pipeline.errors import ToolError


def _csv(value: str, parse, what: str) -> list:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"--{what}: give at least one value")
    out = []
    for item in items:
        parsed = parse(item)
        if parsed not in out:
            out.append(parsed)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default",
                   help="model source: default, timm:<arch>[:random], a model file, onnx:<path>, tflite:<path>")
    p.add_argument("--formats", default="onnx,tflite", help="comma list of onnx, tflite (default: both)")
    p.add_argument("--modes", default="dense,palette,palette-int8",
                   help="comma list of dense, palette, palette-int8 (default: all)")
    p.add_argument("--clusters", type=int, default=None, help="clusters per palette (default 64)")
    p.add_argument("--granularity", default=None, help="per_tensor | per_channel_group")
    p.add_argument("--group-size", type=int, default=None, help="output channels per codebook (per_channel_group)")
    p.add_argument("--config", type=Path, default=None, help="palettize config YAML (flags above override it)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the bundles")
    p.add_argument("--runs", type=int, default=20, help="timed runs per latency figure (default 20)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads for latency (default 1)")
    p.add_argument("--eval-samples", type=int, default=1000,
                   help="samples for top-1 agreement (default model: test split; else a seeded batch, max 64)")
    p.add_argument("--input-shape", default=None, help="input shape, e.g. 1,3,224,224 (files that do not say)")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickled model files (trusted only)")
    p.add_argument("--keep-palette-latency", action="store_true",
                   help="also time ONNX palette files with onnxruntime's ConstantFolding off (decode every run)")
    return p


def palettize_config(args):
    from pipeline.palettize import PalettizeConfig

    if args.config is not None:
        config = PalettizeConfig.from_yaml(args.config)
    else:
        config = PalettizeConfig()
    changes = {}
    if args.clusters is not None:
        changes["clusters"] = args.clusters
    if args.granularity is not None:
        changes["granularity"] = args.granularity
    if args.group_size is not None:
        changes["group_size"] = args.group_size
    return dataclasses.replace(config, **changes) if changes else config


class _Progress:
    """A rich progress bar on a terminal; silent otherwise (CI, pipes)."""

    def __init__(self, total: int) -> None:
        self.bar = None
        if is_interactive():
            from rich.progress import Progress

            self.bar = Progress(transient=True, console=None)
            self.task = self.bar.add_task("exporting", total=total)
            self.bar.start()

    def step(self, text: str, advance: int = 0) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=text, advance=advance)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _eval_inputs(source, n: int, golden: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str]:
    if source == "default":
        try:
            from pipeline.data import load_default_dataset

            x, y = load_default_dataset("test")
            return x[:n], y[:n], f"default test split, first {min(n, len(x))}"
        except ToolError:
            pass
    n = max(1, min(n, 64))
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, *golden.shape[1:])).astype(np.float32), None, f"seeded normal batch of {n}"


def _fidelity(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None) -> dict:
    ref2, got2 = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    out = {"max_abs_diff_to_fp32": float(np.max(np.abs(ref2.astype(np.float64) - got2))),
           "top1_agreement": float(np.mean(ref2.argmax(1) == got2.argmax(1)))}
    if labels is not None:
        out["top1_accuracy"] = float(np.mean(got2.argmax(1) == labels))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    formats = _csv(args.formats, parse_format, "formats")
    modes = _csv(args.modes, parse_mode, "modes")
    modes.sort(key=lambda m: list(ExportMode).index(m))  # dense first: the palette size check uses it
    for name in ("runs", "threads", "eval_samples"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    from pipeline.fsutil import ensure_writable_dir

    ensure_writable_dir(args.out)  # before any work: an unwritable --out fails in a second
    from converters.bundle import export_bundle
    from converters.runtimes import host_latency_ms, runner_for
    from converters.sources import is_file_source, onnx_file_bundle, open_file_source
    from pipeline.sources import parse_input_shape

    shape = parse_input_shape(args.input_shape) if args.input_shape else None
    config = palettize_config(args) if any(m is not ExportMode.DENSE for m in modes) else None
    file_source = is_file_source(args.model)
    notes: list[str] = []
    rows: list[dict] = []
    palettes: dict = {}
    progress = _Progress(total=len(formats) * len(modes))
    try:
        if file_source:
            src = open_file_source(args.model, shape)
            golden = src.example_input(1, 0)
            ref_run = runner_for(src.path)
            reference_logits = ref_run
            model_label = src.source
        else:
            from pipeline.palettize import palettize
            from pipeline.sources import load_model

            progress.step(f"loading {args.model}")
            loaded = load_model(args.model, allow_pickle=args.allow_pickle, input_shape=shape)
            golden_t = loaded.example_input(batch=1, seed=0)
            golden = golden_t.numpy()
            from converters.verify import torch_outputs

            reference_logits = lambda x: torch_outputs(loaded.module, x)  # noqa: E731
            model_label = loaded.name
            for mode in modes:
                if mode is ExportMode.DENSE:
                    continue
                cfg = dataclasses.replace(config, int8_grid=mode is ExportMode.PALETTE_INT8)
                progress.step(f"palettizing ({mode.value})")
                palettes[mode] = (palettize(loaded.module, cfg), cfg)
        x_eval, y_eval, eval_label = _eval_inputs(args.model, args.eval_samples, golden)
        ref_eval = reference_logits(x_eval)[0]
        dense_bytes: dict[ExportFormat, int] = {}
        for fmt in formats:
            for mode in modes:
                name = f"{fmt.value}-{mode.value}"
                progress.step(f"exporting {name}")
                row = {"format": fmt.value, "mode": mode.value, "bundle": str(args.out / name)}
                try:
                    if file_source:
                        if fmt.value != src.kind:
                            raise ExportUnavailableError(
                                f"{src.kind}: sources are palettized in their own format; no {fmt.value} file made",
                                next_step=f"Use --formats {src.kind}.")
                        cfg = None if mode is ExportMode.DENSE else dataclasses.replace(
                            config, int8_grid=mode is ExportMode.PALETTE_INT8)
                        if src.kind == "onnx":
                            bundle = onnx_file_bundle(src, mode, cfg, args.out, name,
                                                      dense_bytes=dense_bytes.get(fmt))
                        else:
                            bundle = _tflite_file_bundle(src, mode, cfg, args.out, name)
                    else:
                        result = palettes.get(mode)
                        bundle = export_bundle(
                            loaded.module, golden_t, fmt, mode, result[0].palettes if result else None, args.out,
                            name=name, source_model=args.model, model_name=loaded.name,
                            palettize_config=result[1].to_dict() if result else None,
                            dense_bytes=dense_bytes.get(fmt))
                except ExportUnavailableError as err:
                    row["error"] = str(err)
                    notes.append(f"{name}: skipped: {err}")
                    rows.append(row)
                    progress.step(name, advance=1)
                    continue
                except ToolError as err:
                    row["error"] = str(err)
                    notes.append(f"{name}: FAILED: {err}")
                    rows.append(row)
                    progress.step(name, advance=1)
                    continue
                if mode is ExportMode.DENSE:
                    dense_bytes[fmt] = bundle.manifest["bytes"]
                model_path = bundle.model_path
                got = runner_for(model_path)(x_eval)[0]
                row.update(
                    bytes=bundle.manifest["bytes"],
                    verify_max_abs_diff=bundle.manifest["verification"]["max_abs_diff"],
                    tolerance_atol=bundle.manifest["atol"],
                    palettized_tensors=len(bundle.manifest["palette"]["tensors"]),
                    left_dense=len(bundle.manifest["palette"]["left_dense"]),
                    forms=sorted({t["form"] for t in bundle.manifest["palette"]["tensors"]}),
                    **_fidelity(ref_eval, got, y_eval))
                lat = host_latency_ms(model_path, golden, threads=args.threads, runs=args.runs)
                row["latency_median_ms"] = lat["median_ms"]
                row["runtime"] = lat["runtime"]
                if args.keep_palette_latency and fmt is ExportFormat.ONNX and mode is ExportMode.PALETTE:
                    row["latency_keep_palette_median_ms"] = host_latency_ms(
                        model_path, golden, threads=args.threads, runs=args.runs, keep_palette=True)["median_ms"]
                rows.append(row)
                progress.step(name, advance=1)
    finally:
        progress.close()
    for row in rows:
        dense = next((r for r in rows if r["format"] == row["format"] and r["mode"] == "dense" and "bytes" in r), None)
        if dense and "bytes" in row:
            row["ratio_to_dense"] = row["bytes"] / dense["bytes"]
            if "latency_median_ms" in row:
                row["latency_ratio_to_dense"] = row["latency_median_ms"] / dense["latency_median_ms"]
    summary = {"model": args.model, "model_name": model_label, "eval": eval_label, "threads": args.threads,
               "runs": args.runs, "device": "host CPU (not a phone)", "clusters": getattr(config, "clusters", None),
               "rows": rows, "notes": notes}
    _write_summary(args.out / "export_summary.json", summary)
    _print_table(summary)
    failed = [n for n in notes if ": FAILED:" in n]
    if failed:
        print(f"{len(failed)} export(s) failed; the other bundles are complete.", file=sys.stderr)
    return 1 if failed else 0


def _tflite_file_bundle(src, mode: ExportMode, config, out_dir: Path, name: str):
    """``tflite:`` source through helper tflite's ``palettize_tflite_file`` (it verifies against the
    decoded dense file itself); the bundle re-checks the file against the exporter-verified output."""
    try:
        from converters.tflite import palettize_tflite_file
    except ImportError as err:
        raise ExportUnavailableError(f"tflite: sources need converters.tflite ({err})",
                                     next_step="Install litert-torch and ai-edge-litert.") from err
    import shutil

    from converters.bundle import write_bundle
    from converters.modes import ExportedFile, sha256_of
    from converters.runtimes import tflite_runner

    holder: dict = {}

    def export(path: Path) -> ExportedFile:
        if mode is ExportMode.DENSE:
            shutil.copyfile(src.path, path)
            return ExportedFile(path, ExportFormat.TFLITE, mode, path.stat().st_size, sha256_of(path), [], [])
        exported = palettize_tflite_file(src.path, config, path, mode=mode)
        holder["run"] = tflite_runner(path)
        return exported

    def reference(x: np.ndarray) -> list[np.ndarray]:
        # palettize_tflite_file verified the file against the decoded dense file; the bundle only
        # needs the outputs it was verified with, so the file is its own reference here.
        run = holder.get("run") or tflite_runner(src.path)
        return run(x)

    return write_bundle(export, reference=reference, golden_input=src.example_input(1, 0), out_dir=out_dir,
                        name=name, format=ExportFormat.TFLITE, mode=mode, source_model=src.source,
                        model_name=src.name, palettize_config=None if config is None else config.to_dict(),
                        reference_label="the dense input file" if mode is ExportMode.DENSE else
                        "the input file with decoded palette weights (checked inside palettize_tflite_file)")


def _write_summary(path: Path, summary: dict) -> None:
    from pipeline.fsutil import atomic_write_json

    atomic_write_json(path, summary)


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['model_name']}: export on the host CPU ({summary['threads']} thread(s), "
                        f"median of {summary['runs']} runs; fidelity on {summary['eval']})")
    for col in ("format", "mode", "bytes", "x dense", "verify |Δ|", "max |Δ| fp32", "top-1 agree",
                "latency ms", "x dense ms", "runtime", "forms"):
        table.add_column(col, justify="left" if col in ("format", "mode", "runtime", "forms") else "right",
                         no_wrap=col != "forms")
    for r in summary["rows"]:
        if "error" in r:
            table.add_row(r["format"], r["mode"], "-", "-", "-", "-", "-", "-", "-", "-", r["error"][:60])
            continue
        lat = f"{r['latency_median_ms']:.2f}"
        if "latency_keep_palette_median_ms" in r:
            lat += f" ({r['latency_keep_palette_median_ms']:.2f} kept)"
        table.add_row(r["format"], r["mode"], f"{r['bytes']:,}", f"{r.get('ratio_to_dense', float('nan')):.3f}",
                      f"{r['verify_max_abs_diff']:.2g}", f"{r['max_abs_diff_to_fp32']:.3g}",
                      f"{r['top1_agreement']:.3f}", lat, f"{r.get('latency_ratio_to_dense', float('nan')):.2f}",
                      r["runtime"], ",".join(r["forms"]) or "-")
    console = Console(file=sys.stdout, width=max(170, Console(file=sys.stdout).width))
    console.print(table)
    for note in summary["notes"]:
        console.print(note, markup=False)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
