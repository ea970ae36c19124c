"""End-to-end palette tuning (`pipeline.palettize.tune`): indices and bits stay, held-out error drops.

Every model here is small and seeded; the held-out inputs are fresh draws the tuning never saw.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.palettize import PalettizeConfig, bits_per_weight, palettize
from pipeline.palettize.sensitivity import output_distortion


def _mlp(out: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(24, 96), torch.nn.GELU(), torch.nn.Linear(96, 96), torch.nn.GELU(),
                               torch.nn.Linear(96, out)).eval()


def _inputs(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 24, generator=torch.Generator().manual_seed(seed))


def _held_out_error(model, result, classifier: bool) -> float:
    x = _inputs(512, 99)
    with torch.no_grad():
        return output_distortion(model(x).double(), result.model(x).double(), classifier)


@pytest.mark.parametrize("int8_grid", [True, False], ids=["int8-scales", "float-codebooks"])
@pytest.mark.parametrize("out,classifier", [(10, True), (1, False)], ids=["classifier", "regression"])
def test_tuning_keeps_indices_and_bits_and_lowers_held_out_error(int8_grid, out, classifier) -> None:
    model = _mlp(out, seed=out)
    base = PalettizeConfig(clusters=6, int8_grid=int8_grid, weight_threshold=256)
    plain = palettize(model, base)
    tuned = palettize(model, PalettizeConfig(clusters=6, int8_grid=int8_grid, weight_threshold=256, tune_epochs=6,
                                             tune_lr=3e-3), calibration=_inputs(768, 1))
    assert set(tuned.palettes) == set(plain.palettes) and len(plain.palettes) >= 2
    params = dict(tuned.model.named_parameters())
    for name, p0 in plain.palettes.items():
        p1 = tuned.palettes[name]
        np.testing.assert_array_equal(p1.indices, p0.indices)
        if int8_grid:  # the integer codes stay: still exact int8; only the scales move
            np.testing.assert_array_equal(p1.codebook, p0.codebook)
            assert not np.array_equal(p1.scale, p0.scale)
        else:
            assert p1.scale is None and p1.codebook.shape == p0.codebook.shape
            assert not np.array_equal(p1.codebook, p0.codebook)
        np.testing.assert_array_equal(params[name].detach().numpy(), p1.decode())
    assert bits_per_weight(tuned.palettes) == bits_per_weight(plain.palettes)
    report = tuned.tune
    assert report.classifier is classifier and report.epoch_kept >= 1
    assert report.loss_after < report.loss_before
    before, after = _held_out_error(model, plain, classifier), _held_out_error(model, tuned, classifier)
    print(f"held-out error {before:.4g} -> {after:.4g} ({after / before:.3f})")
    # a per-tensor codebook has 6 free numbers, the int8 scales one per output channel
    assert after < (0.8 if int8_grid else 0.97) * before, (before, after)
    # the report rows describe the tuned palettes
    row = {r.name: r for r in tuned.report.tensors}
    dense = dict(model.named_parameters())
    for name, pal in tuned.palettes.items():
        err = float(((dense[name].detach().double().numpy() - pal.decode()) ** 2).sum())
        assert row[name].noise_power == pytest.approx(err, rel=1e-9)


def test_tuning_that_never_helps_returns_the_untuned_palettes() -> None:
    model = _mlp(10, seed=3)
    base = PalettizeConfig(clusters=6, int8_grid=True, weight_threshold=256)
    plain = palettize(model, base)
    # a learning rate of 1 throws every multiplier far off: no epoch beats the start on held-back inputs
    wild = palettize(model, PalettizeConfig(clusters=6, int8_grid=True, weight_threshold=256, tune_epochs=2,
                                            tune_lr=1.0), calibration=_inputs(256, 1))
    assert wild.tune.epoch_kept == 0 and wild.tune.loss_after == wild.tune.loss_before
    for name, p0 in plain.palettes.items():
        np.testing.assert_array_equal(wild.palettes[name].scale, p0.scale)
    assert _held_out_error(model, wild, True) == pytest.approx(_held_out_error(model, plain, True), rel=1e-6)


def test_tuning_a_torchscript_module() -> None:
    model = torch.jit.script(_mlp(10, seed=4))
    cfg = PalettizeConfig(clusters=6, int8_grid=True, weight_threshold=256, tune_epochs=3, tune_lr=3e-3)
    result = palettize(model, cfg, calibration=_inputs(512, 1))
    assert result.tune.loss_after < result.tune.loss_before


def test_tuning_on_separate_inputs_and_the_saved_config(tmp_path) -> None:
    from pipeline.palettize import load_palette_config, load_palettes, save_palettes

    model = _mlp(10, seed=5)
    cfg = PalettizeConfig(clusters=6, int8_grid=True, weight_threshold=256, tune_epochs=2, tune_lr=3e-3)
    # no calibration at all: the tuning inputs are enough (nothing else in this config needs any)
    result = palettize(model, cfg, tuning=_inputs(300, 2).numpy())
    assert result.tune.inputs + result.tune.held_back == 300
    path = tmp_path / "p.safetensors"
    save_palettes(path, result.palettes, result.config)
    back = load_palettes(path)
    for name, pal in result.palettes.items():
        np.testing.assert_array_equal(back[name].scale, pal.scale)
    assert load_palette_config(path).tune_epochs == 2


@pytest.mark.parametrize("field,value", [("tune_epochs", -1), ("tune_epochs", 1.5), ("tune_epochs", True),
                                         ("tune_lr", 0), ("tune_lr", float("nan")), ("tune_lr", 2.0),
                                         ("tune_lr", "fast")])
def test_bad_tuning_settings_name_the_field(field, value) -> None:
    with pytest.raises(ConfigError) as err:
        PalettizeConfig(**{field: value})
    assert err.value.facts["field"] == field and field in str(err.value)


def test_tuning_without_inputs_is_a_clear_error() -> None:
    cfg = PalettizeConfig(clusters=6, weight_threshold=256, tune_epochs=1)
    assert cfg.needs_calibration
    with pytest.raises(ConfigError, match="tune_epochs needs calibration inputs"):
        palettize(_mlp(10, 6), cfg)
    with pytest.raises(ConfigError, match="at least 8 inputs"):
        palettize(_mlp(10, 6), cfg, calibration=_inputs(4, 1))


@pytest.mark.slow  # one ONNX export with verification
def test_tuned_int8_palettes_export_and_verify(tmp_path) -> None:
    from converters.bundle import export_bundle
    from pipeline.data import load_default_dataset
    from pipeline.sources import load_model

    loaded = load_model("default")
    x_train, _ = load_default_dataset("train")
    cfg = PalettizeConfig(clusters=16, int8_grid=True, tune_epochs=1)
    result = palettize(loaded.module, cfg, calibration=x_train[:128])
    plain = palettize(loaded.module, PalettizeConfig(clusters=16, int8_grid=True))
    assert any(not np.array_equal(result.palettes[n].scale, p.scale) for n, p in plain.palettes.items())
    bundle = export_bundle(loaded.module, loaded.example_input(batch=1, seed=3), "onnx", "palette-int8",
                           result.palettes, tmp_path, source_model="default",
                           palettize_config=result.config.to_dict())
    assert bundle.verification is not None and bundle.verification.passed, bundle.verification


# ------------------------------------------------------------------------------------------------
# augmented calibration inputs (`pipeline.fidelity.augment`)


def test_augmented_sentences_come_from_the_calibration_pool_only() -> None:
    from types import SimpleNamespace

    from pipeline.fidelity.augment import augmented_calibration
    from pipeline.fidelity.data import sentence_split

    loaded = SimpleNamespace(name="words", metadata={"tokenize": lambda ss: np.array(ss, dtype=object)})
    evaluation, pool = sentence_split()
    texts = list(augmented_calibration("sentences", loaded, np.array([]), 600, seed=0))
    assert len(texts) == 600 and len(set(texts)) > 500
    assert not set(texts) & set(evaluation)
    pool_words = {w for s in pool for w in s.split()}
    assert all(set(t.split()) <= pool_words for t in texts)
    plain = sum(t in set(pool) for t in texts)
    assert 150 < plain < 450  # about 35 % left as they are; the rest joined with another one or thinned
    again = list(augmented_calibration("sentences", loaded, np.array([]), 600, seed=0))
    assert again == texts  # seeded


def test_augmented_photos_are_crops_of_calibration_photos_in_the_model_range() -> None:
    from types import SimpleNamespace

    from pipeline.fidelity.augment import augmented_calibration, random_crop

    rng = np.random.default_rng(0)
    img = rng.random((60, 90, 3)).astype(np.float32)
    crops = [random_crop(img, (24, 32), rng) for _ in range(50)]
    assert all(c.shape == (24, 32, 3) and c.min() >= 0 and c.max() <= 1 for c in crops)
    assert len({c.tobytes() for c in crops}) == 50
    loaded = SimpleNamespace(input_shape=(1, 3, 32, 32), input_mean=(0.5, 0.5, 0.5), input_std=(0.25, 0.25, 0.25))
    x = augmented_calibration("images", loaded, np.zeros((1, 3, 32, 32), np.float32), 40, seed=0)
    assert x.shape == (40, 3, 32, 32) and x.dtype == np.float32
    assert -2.0 - 1e-6 <= x.min() and x.max() <= 2.0 + 1e-6  # (pixel - 0.5) / 0.25 for pixels in [0, 1]
    np.testing.assert_array_equal(x, augmented_calibration("images", loaded, x[:1], 40, seed=0))


def test_load_data_tuning_inputs_for_the_default_model() -> None:
    from pipeline.fidelity.data import load_data
    from pipeline.sources import load_model

    loaded = load_model("default")
    data = load_data("auto", loaded, calibration=16, tuning=200)
    assert data.tuning.shape[0] == 200 and data.tuning.shape[1:] == data.calibration.shape[1:]
    assert load_data("auto", loaded, calibration=16).tuning is None
    with pytest.raises(ConfigError, match="tuning must be"):
        load_data("auto", loaded, calibration=16, tuning=-5)


def test_load_data_augment_adds_augmented_rows_to_the_calibration_batch_only() -> None:
    from types import SimpleNamespace

    from pipeline.fidelity.data import load_data

    loaded = SimpleNamespace(name="rgb", metadata={}, input_shape=(1, 3, 32, 32), input_mean=(0.5, 0.5, 0.5),
                             input_std=(0.25, 0.25, 0.25))
    plain = load_data("images", loaded, calibration=16)
    more = load_data("images", loaded, calibration=16, augment=40)
    np.testing.assert_array_equal(more.x, plain.x)  # the evaluation set does not move
    assert len(more.calibration) == 56 and "+40 augmented" in more.description
    np.testing.assert_array_equal(more.calibration[:16], plain.calibration)
    tuned = load_data("images", loaded, calibration=16, augment=40, tuning=40)
    assert not np.array_equal(tuned.tuning, tuned.calibration[16:])  # separate draws
    with pytest.raises(ConfigError, match="augment must be"):
        load_data("images", loaded, calibration=16, augment=-1)
