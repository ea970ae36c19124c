"""One bundle per configuration, in any export mode (dense, palette, palette-int8).

Phone delegates (NNAPI, GPU) reject or split control flow, so each configuration is its own
file with no ``If`` gates: the skipped branches are simply absent from the graph.

Palettization composes: the full model is palettized once per mode, then the skips are applied
to the module and the palettes of skipped layers are dropped (their weights are not in the
graph any more). Each bundle folder also holds ``dynamic.json`` (the skipped units and the
configuration key), which the bundle's manifest schema has no place for.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.dynamic.skip import SkipUnit, apply_skips, config_key
from pipeline.errors import ConfigError

MODES = ("dense", "palette", "palette-int8")
FORMATS = ("onnx", "tflite")
DYNAMIC_FILE = "dynamic.json"


@dataclass
class ExportedConfig:
    """One exported configuration: where its bundle lies and what it skips."""

    skipped: frozenset[str]
    format: str
    mode: str
    path: Path
    manifest: dict[str, Any]

    @property
    def key(self) -> str:
        return config_key(self.skipped)

    @property
    def model_file(self) -> Path:
        return self.path / self.manifest["model_file"]


def bundle_name(fmt: str, mode: str, skipped: frozenset[str]) -> str:
    """A short file-system-safe folder name: ``onnx-dense-full`` or ``onnx-dense-skip3-1a2b3c4d``."""
    if not skipped:
        return f"{fmt}-{mode}-full"
    digest = hashlib.sha256(config_key(skipped).encode()).hexdigest()[:8]
    return f"{fmt}-{mode}-skip{len(skipped)}-{digest}"


def mode_palettes(module: Any, modes: Sequence[str], clusters: int = 64) -> tuple[dict[str, dict], dict[str, dict]]:
    """Palettize the full model once per palette mode: (palettes by mode, resolved config by mode)."""
    from pipeline.palettize import PalettizeConfig, palettize

    palettes: dict[str, dict] = {}
    configs: dict[str, dict] = {}
    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"unknown export mode {mode!r}", next_step=f"Use one of: {', '.join(MODES)}.")
        if mode == "dense":
            continue
        pc = PalettizeConfig(clusters=clusters, int8_grid=(mode == "palette-int8"))
        palettes[mode] = palettize(module, pc).palettes
        configs[mode] = pc.to_dict()
    return palettes, configs


def _write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def export_configs(
    module: Any,
    units: Sequence[SkipUnit],
    configs: Sequence[frozenset[str]],
    example_input: Any,
    out_dir: Path,
    *,
    formats: Sequence[str] = ("onnx",),
    modes: Sequence[str] = ("dense",),
    clusters: int = 64,
    source_model: str = "",
    model_name: str | None = None,
    progress: Callable[[int], None] | None = None,
    palettes: dict[str, dict] | None = None,
    palettize_configs: dict[str, dict | None] | None = None,
) -> list[ExportedConfig]:
    """Export every configuration in every format x mode; returns them in that order.

    ``palettes`` (by mode) and ``palettize_configs`` (what each mode's manifest records): palettes
    of the full model made elsewhere (`pipeline.palette_modes`); without them each palette mode
    gets plain ``clusters``-cluster palettes. Each configuration keeps the palettes of the layers
    it still has.

    Existing folders of the same name are replaced (``converters.bundle`` writes atomically).
    """
    from converters.bundle import export_bundle

    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown export format {fmt!r}", next_step=f"Use one of: {', '.join(FORMATS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if palettes is None:
        palettes, pal_configs = mode_palettes(module, modes, clusters)
    else:
        missing = [m for m in modes if m != "dense" and m not in palettes]
        if missing:
            raise ConfigError(f"no palettes were given for mode(s) {', '.join(missing)}",
                              next_step="Palettize every palette mode first (pipeline.palette_modes).")
        pal_configs = {m: d for m, d in (palettize_configs or {}).items() if d is not None}
    name = model_name or source_model or type(module).__name__
    exported: list[ExportedConfig] = []
    for skipped in configs:
        skipped = frozenset(skipped)
        skipped_module = apply_skips(module, skipped, list(units))
        present = {n for n, _ in skipped_module.named_parameters()} | {n for n, _ in skipped_module.named_buffers()}
        dense_bytes: dict[str, int] = {}
        for fmt in formats:
            for mode in [m for m in MODES if m in modes]:
                used = {n: p for n, p in palettes.get(mode, {}).items() if n in present} if mode != "dense" else None
                folder = bundle_name(fmt, mode, skipped)
                bundle = export_bundle(
                    skipped_module, example_input, fmt, mode, used, out_dir, name=folder,
                    source_model=source_model, model_name=f"{name} skip[{config_key(skipped)}]",
                    palettize_config=pal_configs.get(mode), dense_bytes=dense_bytes.get(fmt),
                )
                if mode == "dense":
                    dense_bytes[fmt] = int(bundle.manifest["bytes"])
                _write_json_atomic(Path(bundle.path) / DYNAMIC_FILE, {
                    "schema_version": 1, "skipped": sorted(skipped), "config": config_key(skipped),
                    "source_model": source_model, "format": fmt, "mode": mode,
                })
                exported.append(ExportedConfig(skipped, fmt, mode, Path(bundle.path), bundle.manifest))
                if progress:
                    progress(1)
    return exported


def count_control_flow(path: Path) -> dict[str, int]:
    """Control-flow ops in an exported file: ONNX If/Loop/Scan nodes (any subgraph), TFLite IF/WHILE."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        counts = {"If": 0, "Loop": 0, "Scan": 0}

        def walk(graph) -> None:
            for node in graph.node:
                if node.op_type in counts:
                    counts[node.op_type] += 1
                for attr in node.attribute:
                    if attr.g is not None and attr.g.node:
                        walk(attr.g)
                    for g in attr.graphs:
                        walk(g)

        walk(onnx.load(str(path), load_external_data=False).graph)
        return counts
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path))
        ops = [d.get("op_name", "") for d in interp._get_ops_details()]  # noqa: SLF001 - no public op list
        return {"IF": sum(op == "IF" for op in ops), "WHILE": sum(op == "WHILE" for op in ops)}
    raise ConfigError(f"{path}: unknown model file type; expected .onnx or .tflite")
