"""One file per skip configuration: no control flow, same outputs as PyTorch, palettes compose; trace run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from converters.runtimes import runner_for
from pipeline.dynamic.export import DYNAMIC_FILE, count_control_flow, export_configs
from pipeline.dynamic.skip import apply_skips, find_units
from pipeline.dynamic.trace import TraceConfig, job_section, load_budgets, run_trace, synthetic_budgets
from pipeline.errors import ConfigError

CONFIGS = [frozenset(), frozenset({"blocks.0.attn"}), frozenset({"blocks.0.mlp", "blocks.1.attn"})]


@pytest.fixture(scope="module")
def small():
    from pipeline.models.mixvit import MixViT, MixViTConfig

    torch.manual_seed(5)
    model = MixViT(MixViTConfig(embed_dim=32, depth=2, num_heads=2)).eval()
    with torch.no_grad():
        model.head.weight.mul_(100.0)       # logits of order 1, so that branch differences show
    return model, find_units(model)


@pytest.fixture(scope="module")
def exported(small, tmp_path_factory):
    model, units = small
    out = tmp_path_factory.mktemp("dyn-bundles")
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return export_configs(model, units, CONFIGS, example, out, formats=("onnx",), modes=("dense", "palette-int8"),
                          clusters=16, source_model="test-mixvit")


def test_one_bundle_per_configuration_and_mode_without_control_flow(exported) -> None:
    assert [(e.key, e.mode) for e in exported] == [(k, m) for k in ("full", "blocks.0.attn",
                                                                    "blocks.0.mlp+blocks.1.attn")
                                                   for m in ("dense", "palette-int8")]
    assert len({e.path for e in exported}) == len(exported)
    for e in exported:
        assert count_control_flow(e.model_file) == {"If": 0, "Loop": 0, "Scan": 0}
        side = json.loads((e.path / DYNAMIC_FILE).read_text())
        assert side["skipped"] == sorted(e.skipped) and side["mode"] == e.mode
    sizes = {(e.key, e.mode): e.manifest["bytes"] for e in exported}
    assert sizes[("blocks.0.attn", "dense")] < sizes[("full", "dense")]
    assert sizes[("full", "palette-int8")] < sizes[("full", "dense")]


def test_exported_dense_files_match_the_skipped_pytorch_model(small, exported) -> None:
    model, units = small
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28)).astype(np.float32)
    outputs = {}
    for e in (e for e in exported if e.mode == "dense"):
        with torch.no_grad():
            ref = apply_skips(model, e.skipped, units)(torch.from_numpy(x)).numpy()
        got = runner_for(e.model_file)(x)[0]
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
        outputs[e.key] = got
    assert not np.allclose(outputs["full"], outputs["blocks.0.attn"], atol=1e-3)


def test_palettes_of_skipped_layers_are_dropped_and_the_rest_kept(small, exported) -> None:
    from converters.verify import palettized_reference
    from pipeline.dynamic.export import mode_palettes

    model, units = small
    palettes, _ = mode_palettes(model, ["palette-int8"], clusters=16)
    x = np.random.default_rng(4).standard_normal((2, 1, 28, 28)).astype(np.float32)
    for e in (e for e in exported if e.mode == "palette-int8"):
        names = {t["name"] for t in e.manifest["palette"]["tensors"]}
        for unit in e.skipped:
            assert not any(n.startswith(unit + ".") for n in names), (unit, names)
        kept = {n for n in palettes["palette-int8"] if not any(n.startswith(u + ".") for u in e.skipped)}
        assert names <= kept and len(names) >= len(kept) - 2   # tiny tensors may stay dense
        skipped_model = apply_skips(model, e.skipped, units)
        used = {n: p for n, p in palettes["palette-int8"].items() if n in names}
        ref, missing = palettized_reference(skipped_model, used)
        assert not missing
        with torch.no_grad():
            expected = ref(torch.from_numpy(x)).numpy()
        got = runner_for(e.model_file)(x)[0]
        np.testing.assert_allclose(got, expected, atol=0.05 * float(np.abs(expected).max()) + 1e-3)


def test_budget_trace_run_picks_within_budget_and_counts_misses(exported, tmp_path) -> None:
    dense = [e for e in exported if e.mode == "dense"]
    configs = [TraceConfig(e.key, e.model_file, cost_ms=c, accuracy=a)
               for e, c, a in zip(dense, (3.0, 2.0, 1.0), (0.99, 0.9, 0.7), strict=True)]
    budgets = [5.0, 2.5, 1.5, 0.0, 1e6, 2.0]
    frames = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    trace = run_trace(configs, budgets, frames, warmup=1)
    picks = [f["config"] for f in trace["frames"]]
    assert picks == ["full", "blocks.0.attn", "blocks.0.mlp+blocks.1.attn", "blocks.0.mlp+blocks.1.attn", "full",
                     "blocks.0.attn"]
    s = trace["summary"]
    assert s["frames"] == 6 and s["nothing_fit"] == 1 and s["switches"] == 4
    assert s["deadline_misses"] == sum(f["latency_ms"] > f["budget_ms"] for f in trace["frames"])
    assert s["deadline_misses"] >= 1                            # a 0 ms budget cannot be met
    assert s["mean_accuracy"] == pytest.approx(np.mean([0.99, 0.9, 0.7, 0.7, 0.99, 0.9]))
    assert s["energy_total_mj"] > 0 and all(f["energy_mj"] > 0 for f in trace["frames"])
    assert s["where"]["simulated"] and s["where"]["runtime"] == "onnxruntime"
    section = job_section(configs, budgets, remote_dirs={"full": "/data/local/tmp/x"})
    assert section["configurations"][0]["file"].startswith("/data/local/tmp/x/")
    assert section["budgets_ms"] == budgets
    (tmp_path / "t.json").write_text(json.dumps({"budgets_ms": budgets}))
    assert load_budgets(tmp_path / "t.json") == budgets
    (tmp_path / "bad.json").write_text(json.dumps([1.0, "x"]))
    with pytest.raises(ConfigError, match="budget 1 is 'x'"):
        load_budgets(tmp_path / "bad.json")
    wave = synthetic_budgets(1.0, 3.0, frames=50)
    assert len(wave) == 50 and min(wave) >= 1.0 and max(wave) <= 3.0 and max(wave) - min(wave) > 1.0


@pytest.mark.slow
def test_tflite_files_of_skip_configurations_have_no_control_flow(small, tmp_path) -> None:
    model, units = small
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    (e,) = export_configs(model, units, [frozenset({"blocks.1.mlp"})], example, tmp_path, formats=("tflite",),
                          modes=("dense",))
    assert count_control_flow(e.model_file) == {"IF": 0, "WHILE": 0}
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = apply_skips(model, e.skipped, units)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runner_for(e.model_file)(x)[0], ref, atol=1e-4, rtol=1e-4)


def test_budgeted_gptq_palettes_reach_every_configurations_file(tmp_path) -> None:
    """pipeline.dynamic's palette settings (a 5-bit budget, GPTQ on calibration inputs) decide the
    palettes of every configuration's file: the layout the budget chose, layer by layer, is what
    the file holds and what its manifest records, and the file computes what those palettes do."""
    from converters.verify import palettized_reference
    from pipeline.dynamic.__main__ import DynamicConfig
    from pipeline.palette_modes import palettize_modes, recorded_configs, requested_configs
    from pipeline.palettize.apply import bits_per_weight
    from pipeline.sources import load_model

    loaded = load_model("default")
    model = loaded.module.eval()
    units = find_units(model)
    cfg = DynamicConfig(modes=("palette",), target_bits=5.0, sensitivity="activation", assignment="gptq",
                        calibration=32)
    settings = cfg.palette_settings()
    requested = requested_configs(settings, cfg.modes)
    palettes, applied = palettize_modes(settings, loaded, requested, recorded_configs(settings, requested),
                                        list(requested))
    pals = palettes["palette"]
    assert bits_per_weight(pals) <= 5.0 + 1e-9
    assert len({p.k for p in pals.values()}) > 1, "a budget gives layers different cluster counts"
    skip = frozenset({units[0].name})
    out = export_configs(model, units, [frozenset(), skip], loaded.example_input(batch=1, seed=0), tmp_path,
                         formats=("onnx",), modes=("palette",), palettes=palettes, palettize_configs=applied)
    x = loaded.example_input(batch=3, seed=7).numpy()
    for e in out:
        recorded = e.manifest["palettize_config"]
        assert recorded["target_bits"] == 5.0 and recorded["assignment"] == "gptq"
        assert recorded["calibration"] == {"source": "auto", "rows": 32}
        assert recorded["overrides"], "the per-layer layout is recorded"
        tensors = {t["name"]: t for t in e.manifest["palette"]["tensors"]}
        assert tensors and all(tensors[n]["clusters"] == pals[n].k for n in tensors)
        assert not any(n.startswith(u + ".") for u in e.skipped for n in tensors)
        ref, missing = palettized_reference(apply_skips(model, e.skipped, units),
                                            {n: pals[n] for n in tensors})
        assert not missing
        with torch.no_grad():
            expected = ref(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(runner_for(e.model_file)(x)[0], expected, rtol=1e-3,
                                   atol=1e-3 * float(np.abs(expected).max()))
    with pytest.raises(ConfigError, match="palette-int8"):
        export_configs(model, units, [skip], loaded.example_input(batch=1, seed=0), tmp_path / "x",
                       modes=("palette", "palette-int8"), palettes=palettes, palettize_configs=applied)


def test_dynamic_palette_settings_are_checked_and_come_from_the_command_line() -> None:
    from pipeline.dynamic.__main__ import DynamicConfig, build_parser

    args = vars(build_parser().parse_args(["--modes", "palette", "--target-bits", "5.5", "--assignment", "gptq",
                                           "--calibration", "64", "--tune-epochs", "1"]))
    cfg = DynamicConfig(**args)
    pal = cfg.palette_settings().palettize_config("palette")
    assert (pal.target_bits, pal.assignment.value, pal.tune_epochs, cfg.calibration) == (5.5, "gptq", 1, 64)
    assert DynamicConfig().palette_settings().palettize_config("palette-int8").int8_grid
    for bad, word in (({"tune_epochs": -1}, "tune_epochs"), ({"calibration": 0}, "calibration"),
                      ({"sensitivity": "psychic"}, "sensitivity"), ({"target_bits": 0.5}, "target_bits")):
        with pytest.raises(ConfigError, match=word):
            DynamicConfig(**bad)
