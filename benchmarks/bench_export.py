"""Export modes side by side on the host: file bytes, latency at 1 and 2 threads, peak RSS.

    .venv/bin/python -m benchmarks.bench_export [--model default] [--model timm:deit_tiny_patch16_224:random]
        [--formats onnx,tflite] [--clusters 64] [--runs 30] [--threads 1,2] [--out DIR]

For each model, every format x mode (dense, palette, palette-int8; plus ONNX palette with
ConstantFolding off, the only way onnxruntime keeps a palette in memory) is exported once and then
measured in ONE run, interleaved (round robin over the files, so load on a shared machine hits every
file alike). Figures are printed as ratios to the dense file of the same format.

* bytes: the file on disk.
* latency: median of ``--runs`` single-input inferences (batch 1) after warm-up, host CPU,
  onnxruntime or the LiteRT interpreter (XNNPACK on), at each ``--threads`` value.
* peak RSS: a fresh subprocess per file imports the runtime, loads the file, runs 5 inferences and
  reports its peak RSS (``VmHWM`` on Linux: ``getrusage``'s ``ru_maxrss`` keeps the forking parent's
  size across exec); the same subprocess without a model gives the baseline, subtracted as
  "model RSS" (what the file costs in memory).

These are host figures, not phone figures: the device, runtime and thread count are printed with
every table. Nothing here is a test; run it by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_RSS_SCRIPT = r"""
import resource, sys, json
import numpy as np
path, keep, shape = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3])
kind = sys.argv[4]
if kind == "onnx":
    import onnxruntime  # noqa: F401
else:
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401
if path != "-":
    from converters.runtimes import runner_for
    run = runner_for(path, threads=1, keep_palette=keep)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(5):
        run(x)
# ru_maxrss survives fork+exec (a child of a big parent starts at the parent's size), so on Linux
# read this process's own high-water mark, VmHWM, which a fresh exec resets.
try:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(int(hwm.split()[1]) * 1024)
except (OSError, IndexError):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@dataclasses.dataclass
class Entry:
    label: str
    format: str
    mode: str
    path: Path
    keep_palette: bool = False
    bytes: int = 0
    latency_ms: dict = dataclasses.field(default_factory=dict)  # threads -> median ms
    peak_rss_bytes: int = 0
    model_rss_bytes: int = 0
    palettized: int = 0
    left_dense: int = 0


def _peak_rss(path: str, keep: bool, shape: tuple[int, ...], kind: str, repo: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, path, "1" if keep else "0", json.dumps(list(shape)), kind],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"RSS probe failed for {path}: {out.stderr[-500:]}")
    return int(out.stdout.strip().splitlines()[-1])


def _export_all(
    source: str, formats: list[str], clusters: int, out_dir: Path
) -> tuple[list[Entry], np.ndarray]:
    from converters.modes import ExportMode
    from pipeline.palettize import PalettizeConfig, palettize
    from pipeline.sources import load_model

    loaded = load_model(source)
    x_t = loaded.example_input(batch=1, seed=0)
    t0 = time.perf_counter()
    pal = palettize(loaded.module, PalettizeConfig(clusters=clusters)).palettes
    pal8 = palettize(loaded.module, PalettizeConfig(clusters=clusters, int8_grid=True)).palettes
    print(f"[{source}] palettized in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    by_mode = {ExportMode.DENSE: None, ExportMode.PALETTE: pal, ExportMode.PALETTE_INT8: pal8}
    entries: list[Entry] = []
    tag = source.replace(":", "_").replace("/", "_")
    if "tflite" in formats:
        from converters.tflite import convert_pytorch, export_tflite

        t0 = time.perf_counter()
        dense = convert_pytorch(loaded.module, x_t)
        print(f"[{source}] litert-torch conversion {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for mode, palettes in by_mode.items():
            ef = export_tflite(
                loaded.module, x_t, mode, palettes, out_dir / f"{tag}-{mode.value}.tflite", dense_tflite=dense
            )
            entries.append(
                Entry(
                    f"tflite {mode.value}",
                    "tflite",
                    mode.value,
                    ef.path,
                    palettized=len(ef.tensors),
                    left_dense=len(ef.left_dense),
                )
            )
    if "onnx" in formats:
        from converters.onnx import export_onnx

        for mode, palettes in by_mode.items():
            ef = export_onnx(loaded.module, x_t, mode, palettes, out_dir / f"{tag}-{mode.value}.onnx")
            entries.append(
                Entry(
                    f"onnx {mode.value}",
                    "onnx",
                    mode.value,
                    ef.path,
                    palettized=len(ef.tensors),
                    left_dense=len(ef.left_dense),
                )
            )
            if mode is ExportMode.PALETTE:
                entries.append(
                    Entry(
                        "onnx palette (folding off)",
                        "onnx",
                        mode.value,
                        ef.path,
                        keep_palette=True,
                        palettized=len(ef.tensors),
                        left_dense=len(ef.left_dense),
                    )
                )
    return entries, x_t.numpy()


def _measure(entries: list[Entry], x: np.ndarray, threads: list[int], runs: int, warmup: int) -> None:
    from converters.runtimes import runner_for

    for n in threads:
        runners = [runner_for(e.path, threads=n, keep_palette=e.keep_palette) for e in entries]
        for run in runners:
            for _ in range(warmup):
                run(x)
        samples: list[list[float]] = [[] for _ in entries]
        for _ in range(runs):  # round robin: every file sees the same machine load
            for i, run in enumerate(runners):
                t0 = time.perf_counter()
                run(x)
                samples[i].append((time.perf_counter() - t0) * 1e3)
        for e, s in zip(entries, samples, strict=True):
            e.latency_ms[n] = statistics.median(s)
        del runners


def _table(source: str, entries: list[Entry], threads: list[int], baselines: dict[str, int]) -> str:
    import platform

    lines = [
        f"model {source}; host CPU ({platform.machine()}, {platform.processor() or 'unknown cpu'}), "
        f"not a phone; batch 1; median latency; onnxruntime / LiteRT interpreter (XNNPACK); "
        f"RSS baseline (runtime imported, no model): "
        + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in baselines.items())
    ]
    head = f"{'file':28s} {'bytes':>10s} {'x dense':>8s}"
    for n in threads:
        head += f" {f'{n}t ms':>8s} {'x dense':>8s}"
    head += f" {'model RSS MiB':>13s} {'x dense':>8s} {'placed/left':>11s}"
    lines.append(head)
    for e in entries:
        dense = next(d for d in entries if d.format == e.format and d.mode == "dense")
        row = f"{e.label:28s} {e.bytes:>10d} {e.bytes / dense.bytes:>8.3f}"
        for n in threads:
            row += f" {e.latency_ms[n]:>8.2f} {e.latency_ms[n] / dense.latency_ms[n]:>8.2f}"
        ratio = e.model_rss_bytes / dense.model_rss_bytes if dense.model_rss_bytes > 0 else float("nan")
        row += f" {e.model_rss_bytes / 2**20:>13.1f} {ratio:>8.2f} {e.palettized:>5d}/{e.left_dense:<5d}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", action="append", help="model source (repeatable); default: default")
    p.add_argument("--formats", default="onnx,tflite")
    p.add_argument("--clusters", type=int, default=64)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    models = args.model or ["default"]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    repo = Path(__file__).resolve().parents[1]
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for source in models:
            entries, x = _export_all(source, formats, args.clusters, out_dir)
            for e in entries:
                e.bytes = e.path.stat().st_size
            _measure(entries, x, threads, args.runs, args.warmup)
            baselines = {
                k: _peak_rss("-", False, x.shape, k, repo) for k in sorted({e.format for e in entries})
            }
            for e in entries:
                e.peak_rss_bytes = _peak_rss(str(e.path), e.keep_palette, x.shape, e.format, repo)
                e.model_rss_bytes = e.peak_rss_bytes - baselines[e.format]
            print(_table(source, entries, threads, baselines))
            print()
            report.append(
                {
                    "model": source,
                    "device": "host CPU",
                    "threads": threads,
                    "runs": args.runs,
                    "files": [
                        {
                            **{k: v for k, v in dataclasses.asdict(e).items() if k != "path"},
                            "path": str(e.path),
                        }
                        for e in entries
                    ],
                }
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    from pipeline.cli_support import run_cli

    sys.exit(run_cli(main))
