"""`python -m pipeline.fidelity`: metrics, data sources, the CLI end to end on the default model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli_support import run_cli
from pipeline.errors import ConfigError
from pipeline.fidelity.__main__ import main
from pipeline.fidelity.data import english_sentences, packaged_photo_paths, photo_views
from pipeline.fidelity.metrics import compare, nearest_neighbours, topk_agreement


def test_classifier_metrics() -> None:
    ref = np.array([[3.0, 2.0, 1.0], [0.0, 1.0, 5.0], [1.0, 0.0, 0.5], [0.2, 0.1, 0.0]])
    cand = np.array([[2.0, 3.0, 1.0], [0.0, 1.0, 5.0], [1.0, 0.0, 0.5], [0.0, 0.1, 0.2]])
    assert topk_agreement(ref, cand, 1) == 0.5
    assert topk_agreement(ref, cand, 2) == 0.75  # row 3's candidate pick (class 2) is the ref's 3rd
    m = compare(ref, cand, "classifier", y=np.array([0, 2, 0, 0]))
    assert m["top1_agreement"] == 0.5 and m["accuracy"] == 0.5 and m["n"] == 4


def test_encoder_metrics_nearest_neighbour() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 16))
    assert compare(emb, emb, "encoder")["nn_agreement"] == 1.0
    assert compare(emb, emb, "encoder")["cosine_min"] == pytest.approx(1.0)
    shuffled = emb[rng.permutation(50)]
    assert compare(emb, shuffled, "encoder")["nn_agreement"] < 0.5
    nn = nearest_neighbours(emb)
    assert np.all(nn != np.arange(50))


def test_dense_metrics_correlation() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(8, 4, 5))
    m = compare(ref, 2 * ref + 1, "dense")
    assert m["correlation_mean"] == pytest.approx(1.0) and m["correlation_min"] == pytest.approx(1.0)


def test_docstring_sentences_are_prose_and_plenty() -> None:
    pairs = english_sentences()
    assert len(pairs) >= 300
    sentences = [s for _, s in pairs]
    assert len(set(sentences)) == len(sentences)
    assert all(6 <= len(s.split()) <= 40 and s.endswith(".") and ">>>" not in s for s in sentences)


def test_sentence_calibration_pool_is_large_and_never_holds_an_evaluation_sentence() -> None:
    from types import SimpleNamespace

    from pipeline.fidelity.data import _sentences

    loaded = SimpleNamespace(name="words", metadata={"tokenize": lambda ss: np.array(ss, dtype=object)})
    data = _sentences(loaded, 1200, 0)  # GPTQ on 1536-wide layers wants thousands of tokens
    cal, ev = list(data.calibration), list(data.x)
    assert len(cal) == 1200 and len(set(cal)) == 1200
    assert not set(cal) & set(ev)
    assert len(ev) == len(_sentences(loaded, 8, 1).x)  # the evaluation set does not depend on calibration


def test_photo_views_crops_and_mirrors() -> None:
    img = np.random.default_rng(0).random((60, 90, 3)).astype(np.float32)
    views = photo_views(img, (24, 24))
    assert len(views) == 22 and all(v.shape == (24, 24, 3) for v in views)
    assert np.allclose(views[1], views[0][:, ::-1])


def test_packaged_calibration_photos_are_found_without_network_and_skip_missing() -> None:
    paths = packaged_photo_paths()
    names = {p.name for p in paths}
    assert "grace_hopper.jpg" in names  # matplotlib is a core dependency
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in paths)
    from pipeline.fidelity.data import EVAL_PHOTOS

    assert not names & set(EVAL_PHOTOS)  # calibration never sees an evaluation photo
    assert packaged_photo_paths((("no_such_package_xyz", "a.jpg"), ("matplotlib", "no/such.jpg"))) == []


@pytest.mark.slow  # palettizes the default model three ways and scores 200 test digits each time
def test_cli_end_to_end_default_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "deep" / "fidelity.json"
    code = run_cli(main, ["--model", "default", "--data", "default", "--clusters", "16", "--target-bits", "4",
                          "--sensitivity", "fisher", "--samples", "200", "--calibration", "8",
                          "--algorithm", "lloyd", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    header = next(line for line in lines if line.startswith("config"))
    for col in ("bits/weight", "top-1 agree", "top-5 agree", "accuracy"):
        assert col in header
    doc = json.loads(out.read_text())
    rows = {r["config"]: r for r in doc["rows"]}
    assert list(rows) == ["dense", "int8 per-channel", "k=16 per-tensor +fisher", "budget <=4 bits +fisher"]
    assert rows["dense"]["top1_agreement"] == 1.0 and rows["dense"]["n"] == 200
    assert 8.0 < rows["int8 per-channel"]["bits_per_weight"] < 9.0
    assert 4.0 < rows["k=16 per-tensor +fisher"]["bits_per_weight"] < 4.2  # 4 index bits + codebooks
    assert rows["budget <=4 bits +fisher"]["bits_per_weight"] <= 4.0
    for r in rows.values():
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["top1_agreement"] <= 1.0
    assert rows["int8 per-channel"]["top1_agreement"] >= 0.95  # int8 RTN barely moves this model
    assert not list(out.parent.glob(".fidelity.json.*"))  # no temp file left behind


def test_cli_tuned_rows(tmp_path: Path, capsys) -> None:
    out = tmp_path / "fidelity.json"
    code = run_cli(main, ["--model", "default", "--clusters", "8", "--int8-grid", "--tune-epochs", "1",
                          "--tune-inputs", "96", "--samples", "100", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = {r["config"]: r for r in json.loads(out.read_text())["rows"]}
    row = rows["k=8 per-tensor int8-grid tuned x1"]
    assert "tune loss" in row["notes"] and row["bits_per_weight"] < 3.5
    assert run_cli(main, ["--model", "default", "--tune-epochs", "1", "--tune-lr", "-1"]) == 2
    assert "tune_lr must be" in capsys.readouterr().err


def test_cli_bad_input_is_one_readable_line(capsys) -> None:
    code = run_cli(main, ["--model", "default", "--data", "nonsense", "--samples", "5"])
    err = capsys.readouterr().err
    assert code != 0 and "unknown data source 'nonsense'" in err
    with pytest.raises(ConfigError, match="needs --group-size"):
        main(["--model", "default", "--granularity", "per_channel_group"])
