"""The job and result schemas against the shared fixtures (the Java core reads the same files)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from results.schema import (
    InvalidDocumentError,
    load_schema,
    require_valid_job,
    require_valid_result,
    strip_fixture_metadata,
    validate_job,
    validate_result,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "contracts"
VALIDATE = {"job": validate_job, "result": validate_result}


def _cases(validity: str) -> list:
    out = []
    for kind in ("job", "result"):
        for path in sorted((FIXTURES / kind / validity).glob("*.json")):
            out.append(pytest.param(kind, path, id=f"{kind}/{path.stem}"))
    return out


def test_fixture_sets_are_not_empty_and_cover_the_statuses():
    assert len(_cases("valid")) >= 8 and len(_cases("invalid")) >= 20
    statuses = {json.loads(p.read_text())["status"] for p in (FIXTURES / "result" / "valid").glob("*.json")}
    assert {"ok", "load_failed", "golden_mismatch", "invalid_job"} <= statuses
    methods = {
        (json.loads(p.read_text()).get("energy") or {}).get("method")
        for p in (FIXTURES / "result" / "valid").glob("*.json")
    }
    assert {"simulated", "battery", "odpm", "none"} <= methods


@pytest.mark.parametrize("kind", ["job", "result"])
def test_schema_is_valid_draft_2020_12_with_version_1(kind):
    schema = load_schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": 1}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("kind", "path"), _cases("valid"))
def test_valid_fixture_is_accepted(kind, path):
    doc = json.loads(path.read_text())
    assert not any(k.startswith("_") for k in doc), "valid fixtures carry no notes"
    assert VALIDATE[kind](doc) == []


@pytest.mark.parametrize(("kind", "path"), _cases("invalid"))
def test_invalid_fixture_is_rejected_with_reasons(kind, path):
    raw = json.loads(path.read_text())
    assert isinstance(raw.get("_why"), str) and raw["_why"], "every invalid fixture says why"
    doc = strip_fixture_metadata(raw)
    errors = VALIDATE[kind](doc)
    assert errors, f"{path.name} should be rejected: {raw['_why']}"
    assert all(isinstance(e, str) and ": " in e for e in errors)
    # the plain JSON Schema accepts exactly the documents marked as invariant-only
    schema_errors = list(jsonschema.Draft202012Validator(load_schema(kind)).iter_errors(doc))
    if raw.get("_check") == "invariant":
        assert not schema_errors, f"{path.name} is marked invariant-only but the schema rejects it"
    else:
        assert schema_errors, f"{path.name} must be rejected by the schema alone (the Java side relies on it)"


def test_messages_name_the_field():
    doc = strip_fixture_metadata(json.loads((FIXTURES / "result/invalid/negative_median.json").read_text()))
    assert validate_result(doc) == ["latency/median_ms: -1.0 is less than the minimum of 0"]
    doc = strip_fixture_metadata(json.loads((FIXTURES / "result/invalid/wrong_schema_version.json").read_text()))
    (msg,) = validate_result(doc)
    assert msg.startswith("schema_version:") and "version 1" in msg


@pytest.mark.parametrize("doc", [None, [], "text", 3])
def test_non_objects_are_rejected(doc):
    assert validate_result(doc) and validate_job(doc)


def test_require_valid_raises_one_error_with_all_reasons():
    doc = strip_fixture_metadata(json.loads((FIXTURES / "job/invalid/zero_threads.json").read_text()))
    doc["format"] = "pt"
    with pytest.raises(InvalidDocumentError) as info:
        require_valid_job(doc, source="job.json")
    assert "job.json" in str(info.value) and len(info.value.facts["reasons"]) == 2
    ok = json.loads((FIXTURES / "result/valid/ok_simulated_onnx.json").read_text())
    assert require_valid_result(ok) is ok
