"""Invariants of palettize(model, config): palette sizes, the int8 grid, SQNR floors, selection,
config validation, and the palette file round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError, DataError, InternalError, NothingToDoError
from pipeline.palettize import (
    Palette,
    PalettizeConfig,
    bits_per_weight,
    load_palette_config,
    load_palettes,
    palettize,
    palettize_array,
    register_handler,
    save_palettes,
)
from pipeline.palettize.report import sqnr_db


class TinyNet(torch.nn.Module):
    """Linear + Conv2d + depthwise conv + a small head + LayerNorm: every selection case."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(96, 160)  # 15360 weights
        self.conv = torch.nn.Conv2d(8, 48, 3)  # 3456 weights
        self.dw = torch.nn.Conv2d(48, 48, 3, groups=48)  # 432 weights: under the threshold
        self.norm = torch.nn.LayerNorm(160)
        self.head = torch.nn.Linear(160, 10)  # 1600 weights: under the threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - not run here
        return self.head(self.norm(self.proj(x)))


@pytest.fixture
def tiny() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


def distinct(a: np.ndarray) -> int:
    return int(np.unique(a).size)


@pytest.mark.parametrize("clusters", [2, 16, 64, 256])
def test_at_most_k_distinct_values_per_tensor(tiny: TinyNet, clusters: int) -> None:
    res = palettize(tiny, PalettizeConfig(clusters=clusters))
    assert set(res.palettes) == {"proj.weight", "conv.weight"}
    params = dict(res.model.named_parameters())
    for name, pal in res.palettes.items():
        decoded = params[name].detach().numpy()
        assert distinct(decoded) <= clusters
        np.testing.assert_array_equal(decoded, pal.decode())
        assert pal.indices.dtype == np.uint8 and pal.codebook.dtype == np.float32
        assert pal.codebook.shape == (1, clusters)


def test_grouped_palettes_have_at_most_k_values_per_group(tiny: TinyNet) -> None:
    res = palettize(tiny, PalettizeConfig(clusters=8, granularity="per_channel_group", group_size=32))
    pal = res.palettes["proj.weight"]
    assert pal.codebook.shape == (5, 8) and pal.group_size == 32  # 160 channels / 32
    dec = pal.decode()
    for g in range(5):
        assert distinct(dec[g * 32 : (g + 1) * 32]) <= 8
    assert distinct(dec) > 8  # groups really have their own codebooks
    per_tensor = palettize(tiny, PalettizeConfig(clusters=8)).palettes["proj.weight"]
    w = tiny.proj.weight.detach().numpy()
    assert sqnr_db(w, dec) > sqnr_db(w, per_tensor.decode())


def test_small_tensors_and_the_input_model_are_untouched(tiny: TinyNet) -> None:
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    res = palettize(tiny, PalettizeConfig(clusters=4))
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, before[k]), f"input model changed: {k}"
    after = res.model.state_dict()
    for k in ("dw.weight", "head.weight", "norm.weight", "proj.bias", "conv.bias"):
        assert torch.equal(after[k], before[k]), k
    skipped = dict(res.skipped)
    assert "432 elements < weight_threshold 2048" in skipped["dw.weight"]
    assert "head.weight" in skipped
    assert not torch.equal(after["proj.weight"], before["proj.weight"])


@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel_group"])
def test_int8_grid_is_exact_int8_with_at_most_k_codes_per_channel(tiny: TinyNet, granularity: str) -> None:
    extra = {"group_size": 16} if granularity == "per_channel_group" else {}
    res = palettize(tiny, PalettizeConfig(clusters=16, int8_grid=True, granularity=granularity, **extra))
    for name, pal in res.palettes.items():
        w = dict(tiny.named_parameters())[name].detach().numpy()
        out = w.shape[0]
        expected_scale = (np.abs(w.reshape(out, -1)).max(1) / np.float32(127)).astype(np.float32)
        np.testing.assert_array_equal(pal.scale, expected_scale)
        assert np.all(pal.codebook == np.round(pal.codebook)) and np.abs(pal.codebook).max() <= 127
        q, scale = pal.int8_weights()
        assert q.dtype == np.int8
        dec = pal.decode().reshape(out, -1)
        # the decoded tensor is exactly int8 code * channel scale: a standard int8 weight
        np.testing.assert_array_equal(dec, q.reshape(out, -1).astype(np.float32) * scale[:, None])
        for c in range(out):
            assert distinct(q.reshape(out, -1)[c]) <= 16
            assert distinct(dec[c]) <= 16
        assert pal.max_distinct_per_group() <= 16
        assert sqnr_db(w, pal.decode()) > 15  # 16 levels: well above noise
        # every value got the grid centroid nearest to it (in units of its channel's scale)
        u = w.reshape(out, -1) / np.where(scale > 0, scale, 1)[:, None]
        rows = pal.codebook[pal.group_of_channel()]
        best = np.abs(u[:, :, None] - rows[:, None, :]).min(axis=2)
        assert np.all(np.abs(u - q.reshape(out, -1)) <= best + 1e-4)


def test_non_finite_weights_are_named() -> None:
    w = np.ones((64, 64), dtype=np.float32)
    w[3, 3] = np.nan
    with pytest.raises(DataError, match="weight blocks.0.fc.weight contains NaN"):
        palettize_array("blocks.0.fc.weight", w, PalettizeConfig())


def test_int8_grid_keeps_all_zero_channels_zero() -> None:
    w = np.random.default_rng(0).standard_normal((8, 512)).astype(np.float32)
    w[3] = 0.0
    pal = palettize_array("w", w, PalettizeConfig(clusters=4, int8_grid=True))
    assert np.all(pal.decode()[3] == 0.0)


# Panter-Dite: an optimal k-level quantiser of a density p has MSE ~ (int p^(1/3))^3 / (12 k^2):
# 2.72 sigma^2/k^2 for a Gaussian (31.8 dB at k=64) and 4.5 sigma^2/k^2 for a Laplacian (29.6 dB).
# The floors leave ~1.8 dB for finite samples and k=64 not being asymptotic.
@pytest.mark.parametrize(("dist", "floor_db"), [("gaussian", 30.0), ("laplacian", 27.8)])
@pytest.mark.parametrize("algorithm", ["optimal", "lloyd"])
def test_sqnr_floor_at_64_clusters(dist: str, floor_db: float, algorithm: str) -> None:
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((256, 512)) if dist == "gaussian" else rng.laplace(size=(256, 512))) * 0.02
    pal = palettize_array("w", w.astype(np.float32), PalettizeConfig(algorithm=algorithm, init="density"))
    assert sqnr_db(w, pal.decode()) > floor_db


def test_optimal_is_at_least_as_good_as_lloyd_on_a_tensor(tiny: TinyNet) -> None:
    w = tiny.proj.weight.detach().numpy()
    best = sqnr_db(w, palettize_array("w", w, PalettizeConfig(clusters=32)).decode())
    for init in ("kmeans++", "linear", "density", "quantile"):
        cfg = PalettizeConfig(clusters=32, algorithm="lloyd", init=init)
        assert best >= sqnr_db(w, palettize_array("w", w, cfg).decode()) - 1e-9, init


def test_sample_weights_lower_the_weighted_error(tiny: TinyNet) -> None:
    w = tiny.proj.weight.detach().numpy()
    importance = np.ones_like(w)
    importance[:10] = 1000.0  # ten output channels matter far more
    res = palettize(tiny, PalettizeConfig(clusters=8), sample_weights={"proj.weight": importance})
    plain = palettize(tiny, PalettizeConfig(clusters=8))
    def err(pal: Palette) -> float:
        return float(((pal.decode() - w)[:10] ** 2).sum())
    assert err(res.palettes["proj.weight"]) < err(plain.palettes["proj.weight"])
    with pytest.raises(ConfigError, match="not clustered"):
        palettize(tiny, PalettizeConfig(), sample_weights={"head.weight": np.ones((10, 160))})


def test_selection_by_type_include_exclude_and_overrides(tiny: TinyNet) -> None:
    only_conv = palettize(tiny, PalettizeConfig(module_types=("Conv2d",)))
    assert set(only_conv.palettes) == {"conv.weight"}
    inc = palettize(tiny, PalettizeConfig(include=[r"^proj\."]))
    assert set(inc.palettes) == {"proj.weight"}
    assert ("conv.weight", "not matched by include") in inc.skipped
    exc = palettize(tiny, PalettizeConfig(exclude=["conv"]))
    assert set(exc.palettes) == {"proj.weight"}
    ov = palettize(tiny, PalettizeConfig(clusters=16, overrides={"conv": None, "proj": {"clusters": 4}}))
    assert set(ov.palettes) == {"proj.weight"} and ov.palettes["proj.weight"].k == 4
    assert ("conv.weight", "left dense by overrides") in ov.skipped
    small = palettize(tiny, PalettizeConfig(weight_threshold=0, include=["head"]))
    assert set(small.palettes) == {"head.weight"}


def test_include_that_matches_nothing_lists_layer_names(tiny: TinyNet) -> None:
    with pytest.raises(ConfigError) as err:
        palettize(tiny, PalettizeConfig(include=[r"blocks\.9"]))
    text = str(err.value)
    assert "blocks\\\\.9" in text or "blocks\\.9" in text
    assert "proj.weight" in text and "conv.weight" in text


def test_nothing_to_cluster_is_a_clear_error() -> None:
    small = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with pytest.raises(NothingToDoError, match="weight_threshold"):
        palettize(small, PalettizeConfig())
    with pytest.raises(NothingToDoError, match="no Embedding weights"):
        palettize(torch.nn.Sequential(torch.nn.ReLU()), PalettizeConfig(module_types=("Embedding",)))


def test_shared_weights_are_clustered_once() -> None:
    emb = torch.nn.Embedding(300, 64)
    head = torch.nn.Linear(64, 300, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    res = palettize(model, PalettizeConfig(module_types=("Embedding", "Linear"), clusters=8))
    assert list(res.palettes) == ["emb.weight"]
    assert res.model["head"].weight is res.model["emb"].weight
    assert distinct(res.model["head"].weight.detach().numpy()) <= 8


def test_report_sizes_and_totals(tiny: TinyNet) -> None:
    res = palettize(tiny, PalettizeConfig(clusters=64))
    row = {t.name: t for t in res.report.tensors}["proj.weight"]
    assert row.bytes_dense == 4 * 15360
    assert row.bytes_indices_8bit == 15360 + 4 * 64
    assert row.bytes_packed == math.ceil(15360 * 6 / 8) + 4 * 64
    assert row.distinct_values <= 64 and row.sqnr_db > 25
    totals = res.report.totals()
    assert totals["bytes_dense"] == 4 * (15360 + 3456)
    assert totals["params_total"] == sum(p.numel() for p in tiny.parameters())
    assert totals["compression_packed"] > 5
    doc = res.report.to_dict()
    assert {t["name"] for t in doc["tensors"]} == {"proj.weight", "conv.weight"}
    n = 15360 + 3456
    assert bits_per_weight(res.palettes) == pytest.approx((6 * n + 2 * 64 * 32) / n)  # codebooks count
    from rich.console import Console

    console = Console(record=True, width=160)
    res.report.render(console)
    text = console.export_text()
    assert "proj.weight" in text and "left dense" in text and "head.weight" in text


# --------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"clusters": 1}, "clusters", "2 to 256"),
        ({"clusters": 257}, "clusters", "2 to 256"),
        ({"clusters": "64"}, "clusters", "2 to 256"),
        ({"clusters": True}, "clusters", "2 to 256"),
        ({"granularity": "per_row"}, "granularity", "'per_tensor', 'per_channel_group'"),
        ({"granularity": "per_channel_group"}, "group_size", "required"),
        ({"granularity": "per_channel_group", "group_size": 0}, "group_size", ">= 1"),
        ({"group_size": 8}, "group_size", "only applies"),
        ({"init": "random"}, "init", "'kmeans++', 'linear', 'density', 'quantile'"),
        ({"algorithm": "fast"}, "algorithm", "'optimal', 'lloyd'"),
        ({"weight_threshold": -1}, "weight_threshold", ">= 0"),
        ({"int8_grid": "yes"}, "int8_grid", "true or false"),
        ({"include": ["("]}, "include", "regular expression"),
        ({"module_types": []}, "module_types", "Linear"),
        ({"overrides": {"x": {"clusters": 999}}}, "clusters", "2 to 256"),
        ({"overrides": {"x": {"bits": 4}}}, "overrides", "allowed: clusters"),
    ],
)
def test_config_validation_names_field_and_allowed_values(kwargs, field, allowed) -> None:
    with pytest.raises(ConfigError) as err:
        PalettizeConfig(**kwargs)
    assert field in str(err.value) and allowed in str(err.value)


def test_config_strings_become_enums_and_round_trip() -> None:
    cfg = PalettizeConfig(granularity="per_channel_group", group_size=4, init="quantile", algorithm="lloyd",
                          include=["a"], overrides={"head": None, "b": {"clusters": 16}})
    assert cfg.granularity.value == "per_channel_group"
    assert PalettizeConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resolve("head.weight") is None
    assert cfg.resolve("b.weight").clusters == 16 and cfg.resolve("c.weight") is cfg


def test_yaml_unknown_keys_rejected_and_known_keys_loaded(tmp_path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("clusters: 32\ngranularity: per_channel_group\ngroup_size: 8\nint8_grid: true\n")
    cfg = PalettizeConfig.from_yaml(good)
    assert (cfg.clusters, cfg.group_size, cfg.int8_grid) == (32, 8, True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: 32\nnbits: 6\n")
    with pytest.raises(ConfigError, match=r"unknown palettize config keys \['nbits'\]; allowed: clusters"):
        PalettizeConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        PalettizeConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        PalettizeConfig.from_yaml(tmp_path / "list.yaml")


def test_handlers_are_found_by_config_type(tiny: TinyNet) -> None:
    class OtherConfig:
        pass

    with pytest.raises(ConfigError, match="known types: PalettizeConfig"):
        palettize(tiny, OtherConfig())  # type: ignore[arg-type]
    with pytest.raises(InternalError, match="already registered"):
        register_handler(PalettizeConfig)(lambda *a, **k: None)


# --------------------------------------------------------------------------------------------
# file round trip


@pytest.mark.parametrize(
    "config",
    [
        PalettizeConfig(clusters=16),
        PalettizeConfig(clusters=64, int8_grid=True, granularity="per_channel_group", group_size=7),
    ],
)
def test_save_load_round_trip_is_exact(tiny: TinyNet, tmp_path, config: PalettizeConfig) -> None:
    res = palettize(tiny, config)
    path = save_palettes(tmp_path / "p.safetensors", res.palettes, config)
    back = load_palettes(path)
    assert list(back) == list(res.palettes)
    for name, pal in res.palettes.items():
        got = back[name]
        assert got.shape == pal.shape and got.group_size == pal.group_size
        np.testing.assert_array_equal(got.codebook, pal.codebook)
        np.testing.assert_array_equal(got.indices, pal.indices)
        if pal.scale is None:
            assert got.scale is None
        else:
            np.testing.assert_array_equal(got.scale, pal.scale)
        np.testing.assert_array_equal(got.decode(), pal.decode())
    assert load_palette_config(path) == config
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]  # no temp files left


def test_broken_palette_files_are_refused(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_palettes(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(DataError, match="not a readable safetensors"):
        load_palettes(junk)
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(3, dtype=np.float32)}, str(other))
    with pytest.raises(DataError, match="not a palettes file"):
        load_palettes(other)


def test_inconsistent_palette_is_refused() -> None:
    with pytest.raises(DataError, match="index"):
        Palette("w", (2, 2), np.zeros((1, 2), np.float32), np.full((2, 2), 5, np.uint8))
    with pytest.raises(DataError, match="rows"):
        Palette("w", (4, 2), np.zeros((1, 2), np.float32), np.zeros((4, 2), np.uint8), group_size=2)


def test_import_and_config_stay_light() -> None:
    """`import pipeline.palettize` and building a config load no torch (the CLI validates first)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; import pipeline.palettize as p; p.PalettizeConfig(clusters=8); "
        "print(','.join(m for m in ('torch', 'timm', 'onnx') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
