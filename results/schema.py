"""Load and check the job and result documents against the one JSON Schema for each.

The schemas in ``results/schema/*.schema.json`` are the source of truth, shared with the Java
``core`` module through the fixtures in ``tests/fixtures/contracts/``. A few rules that JSON Schema
cannot say (the number of samples equals ``runs``, min <= median <= max, finished after started)
are checked here as invariants and listed in the result schema's description so the Java side
checks the same.

``validate_*`` return a list of readable reasons (empty when valid) instead of raising, because
the collector answers 422 with all of them at once; ``require_valid_*`` raise
:class:`InvalidDocumentError` for callers that want an exception.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import ResultError

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
SCHEMA_VERSION = 1
RESULT_STATUSES = (
    "ok", "invalid_job", "load_failed", "golden_mismatch", "thermal_abort", "crashed", "timeout", "cancelled",
)


class InvalidDocumentError(ResultError):
    """A job or result document that does not follow its schema (facts: kind, reasons)."""


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The parsed schema for ``kind`` ("job" or "result")."""
    if kind not in ("job", "result"):
        raise ValueError(f"unknown schema kind {kind!r}; allowed: 'job', 'result'")
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text(encoding="utf-8"))


@cache
def _validator(kind: str):
    import jsonschema  # light, but only needed when validating

    schema = load_schema(kind)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    # same rules with the local "$defs" references inlined: jsonschema resolves each "$ref" on
    # every use, which made validation ~1.5x slower (the collector validates every POST)
    return cls(_inline_refs(schema, schema.get("$defs", {})))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
            rest = {k: _inline_refs(v, defs) for k, v in node.items() if k != "$ref"}
            return {"allOf": [target], **rest} if rest else target
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _path(err) -> str:
    parts = [str(p) for p in err.absolute_path]
    return "/".join(parts) if parts else "(document)"


def _describe(err) -> str:
    """One line for one error; for ``oneOf`` (null or object) it names the failing field inside."""
    import jsonschema

    best = err
    while best.context:
        # drop "is not of type 'null'" from the null branch: the reason lies in the other branch
        inner = [e for e in best.context if not (e.validator in ("type", "const") and not e.relative_path)]
        if not inner:
            break
        best = jsonschema.exceptions.best_match(inner)
    message = best.message
    if best.validator == "type" and isinstance(best.instance, (dict, list)):
        got = "an object" if isinstance(best.instance, dict) else "an array"
        message = f"must be of type {best.validator_value!r} here, got {got}"
    if len(message) > 300:
        message = message[:300] + "..."
    return f"{_path(best)}: {message}"


def _schema_errors(kind: str, doc: Any) -> list[str]:
    errors = []
    for err in _validator(kind).iter_errors(doc):
        # oneOf/anyOf failures: report the most specific reason instead of a wall of text
        errors.append(_describe(err))
    # stable order, no repeats
    seen: dict[str, None] = {}
    for e in sorted(errors):
        seen.setdefault(e, None)
    return list(seen)


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _version_error(doc: Any) -> list[str]:
    if isinstance(doc, dict) and "schema_version" in doc and doc["schema_version"] != SCHEMA_VERSION:
        return [
            f"schema_version: this collector reads schema_version {SCHEMA_VERSION}, the document has "
            f"{doc['schema_version']!r}; update the app or the host tool so both speak version {SCHEMA_VERSION}"
        ]
    return []


def validate_job(doc: Any) -> list[str]:
    """Reasons why ``doc`` is not a valid job document (empty list when it is)."""
    if not isinstance(doc, dict):
        return [f"(document): a job is a JSON object, got {type(doc).__name__}"]
    return _version_error(doc) or _schema_errors("job", doc)


def validate_result(doc: Any) -> list[str]:
    """Reasons why ``doc`` is not a valid result document (empty list when it is)."""
    if not isinstance(doc, dict):
        return [f"(document): a result is a JSON object, got {type(doc).__name__}"]
    errors = _version_error(doc) or _schema_errors("result", doc)
    if errors:
        return errors
    lat = doc.get("latency")
    if isinstance(lat, dict):
        if lat["runs"] != len(lat["samples_ms"]):
            errors.append(
                f"latency/runs: runs is {lat['runs']} but samples_ms holds {len(lat['samples_ms'])} samples"
            )
        if not (lat["min_ms"] <= lat["median_ms"] <= lat["max_ms"]):
            errors.append(
                f"latency: expected min_ms <= median_ms <= max_ms, got {lat['min_ms']}, "
                f"{lat['median_ms']}, {lat['max_ms']}"
            )
    started, finished = _parse_ts(doc["started_at"]), _parse_ts(doc["finished_at"])
    if started is None:
        errors.append(f"started_at: {doc['started_at']!r} is not a valid date-time")
    if finished is None:
        errors.append(f"finished_at: {doc['finished_at']!r} is not a valid date-time")
    if started and finished and finished < started:
        errors.append(f"finished_at: {doc['finished_at']} is before started_at {doc['started_at']}")
    return errors


def _require_valid(kind: str, doc: Any, source: str) -> dict[str, Any]:
    errors = validate_job(doc) if kind == "job" else validate_result(doc)
    if errors:
        raise InvalidDocumentError(
            f"{source} is not a valid {kind}: " + "; ".join(errors[:5]),
            next_step=f"Fix the listed fields (schema: results/schema/{kind}.schema.json).",
            kind=kind, reasons=errors,
        )
    return doc


def require_valid_job(doc: Any, *, source: str = "job") -> dict[str, Any]:
    return _require_valid("job", doc, source)


def require_valid_result(doc: Any, *, source: str = "result") -> dict[str, Any]:
    return _require_valid("result", doc, source)


def strip_fixture_metadata(doc: Any) -> Any:
    """Drop top-level keys beginning with ``_`` (fixture notes such as ``_why``)."""
    if isinstance(doc, dict):
        return {k: v for k, v in doc.items() if not k.startswith("_")}
    return doc
