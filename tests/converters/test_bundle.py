"""Bundles: schema-valid manifest, sha256, atomic writes, no bundle after a failed verification."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import numpy as np
import pytest

from converters.bundle import (
    SCHEMA_PATH,
    export_bundle,
    load_bundle,
    validate_manifest,
    write_bundle,
)
from converters.errors import BundleError, ExportVerificationError, ModelFileError
from converters.onnx import export_onnx
from converters.runtimes import run_onnx, run_onnx_outputs


@pytest.fixture(scope="module")
def palette_bundle(tiny_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    return export_bundle(tiny_case.module, tiny_case.example_input, "onnx", "palette", tiny_case.palettes, out,
                         source_model="tiny", palettize_config={"clusters": 64})


def test_manifest_validates_against_the_schema_and_names_the_files(palette_bundle):
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    manifest = json.loads((palette_bundle.path / "manifest.json").read_text())
    jsonschema.validate(manifest, schema)
    for key in ("format", "mode", "model_file", "bytes", "sha256", "golden_input", "golden_output", "atol"):
        assert key in manifest
    assert sorted(p.name for p in palette_bundle.path.iterdir()) == sorted(
        [manifest["model_file"], manifest["golden_input"], manifest["golden_output"], "manifest.json"])
    model = palette_bundle.path / manifest["model_file"]
    assert manifest["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert manifest["bytes"] == model.stat().st_size
    assert manifest["palette"]["tensors"] and manifest["palettize_config"] == {"clusters": 64}


def test_golden_output_is_what_the_file_computes(palette_bundle):
    gi, go = palette_bundle.golden()
    np.testing.assert_allclose(run_onnx(palette_bundle.model_path, gi), go, atol=palette_bundle.manifest["atol"])
    assert list(gi.shape) == palette_bundle.manifest["input_shape"]


def test_load_bundle_round_trip_and_damage(palette_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(palette_bundle.path, copy)
    assert load_bundle(copy).manifest == palette_bundle.manifest
    with open(copy / "model.onnx", "r+b") as fh:  # flip one byte: same size, other sha256
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="sha256 differs"):
        load_bundle(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format"] = "coreml"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format"):
        load_bundle(copy)


def test_manifest_schema_rejects_missing_keys(palette_bundle):
    bad = dict(palette_bundle.manifest)
    del bad["atol"]
    with pytest.raises(BundleError, match="'atol' is a required property"):
        validate_manifest(bad)


def test_failed_verification_leaves_no_bundle(tiny_case, tmp_path):
    out = tmp_path / "out"

    def export(path):
        return export_onnx(tiny_case.module, tiny_case.example_input, "dense", None, path)

    def wrong_reference(x):  # a reference that disagrees: the export must not count as done
        return [o + 1.0 for o in run_onnx_outputs(tmp_path / "ref.onnx", x)]

    export(tmp_path / "ref.onnx")
    with pytest.raises(ExportVerificationError, match="differs from"):
        write_bundle(export, reference=wrong_reference, golden_input=tiny_case.example_input.numpy(),
                     out_dir=out, name="onnx-dense", format="onnx", mode="dense", source_model="tiny",
                     model_name="tiny")
    assert list(out.iterdir()) == []


def test_rewriting_a_bundle_replaces_it_whole(tiny_case, tmp_path):
    first = export_bundle(tiny_case.module, tiny_case.example_input, "onnx", "dense", None, tmp_path, name="b")
    second = export_bundle(tiny_case.module, tiny_case.example_input, "onnx", "palette", tiny_case.palettes,
                           tmp_path, name="b")
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    assert load_bundle(second.path).manifest["mode"] == "palette" and first.path == second.path


def test_missing_manifest_says_the_export_did_not_finish(tmp_path):
    partial = tmp_path / "onnx-dense.partial-123"
    partial.mkdir()
    with pytest.raises(BundleError, match="did not finish"):
        load_bundle(partial)


def test_truncated_and_non_model_files_give_a_clear_error(tiny_case, tmp_path):
    good = export_onnx(tiny_case.module, tiny_case.example_input, "dense", None, tmp_path / "m.onnx").path
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    for path in (truncated, text):
        with pytest.raises(ModelFileError, match=f"ONNX file {path} cannot be loaded") as info:
            run_onnx(path, tiny_case.example_input.numpy())
        assert "export it again" in str(info.value)
    with pytest.raises(ModelFileError, match="does not exist"):
        run_onnx(tmp_path / "absent.onnx", tiny_case.example_input.numpy())
