"""The store on its own: one row per run_id, summaries, filters, documents; PostgreSQL when given."""

from __future__ import annotations

import os
import sqlite3

import pytest

from pipeline.errors import ConfigError
from results.store import ResultStore, RunConflictError, RunFilter, StoreUnavailableError, canonical_json


@pytest.fixture
def store(tmp_path):
    s = ResultStore(f"sqlite:///{tmp_path / 'runs.db'}")
    yield s
    s.close()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(store, tmp_path):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    raw = sqlite3.connect(tmp_path / "runs.db")
    indexed = {row[2] for row in raw.execute("SELECT * FROM sqlite_master WHERE type='index'").fetchall()}
    raw.close()
    assert indexed == {"runs"}
    cols = {c["name"] for c in __import__("sqlalchemy").inspect(store.engine).get_columns("runs")}
    assert {"run_id", "device_model", "device_serial", "simulated", "model_name", "format", "mode", "status",
            "created_at", "median_ms", "per_inference_mj", "document", "sha256", "run_set"} <= cols


def test_add_is_idempotent_and_refuses_a_different_body(store, result_doc):
    doc = result_doc("s1")
    first = store.add(doc)
    assert first.stored and not first.duplicate
    again = store.add(dict(reversed(list(doc.items()))))  # same content, other key order
    assert again.duplicate and not again.stored and again.sha256 == first.sha256
    with pytest.raises(RunConflictError, match="s1") as info:
        store.add(result_doc("s1", app_version="other"))
    assert info.value.facts["stored_sha256"] == first.sha256
    assert store.count() == 1 and store.get("s1") == doc


def test_summaries_documents_and_filters(store, result_doc):
    store.add(result_doc("a", **{"model.mode": "palette", "started_at": "2026-11-21T00:00:00Z",
                                 "finished_at": "2026-11-21T00:01:00Z"}))
    store.add(result_doc("b", **{"status": "load_failed", "latency": None, "energy": None, "error": "x"}))
    runs, total = store.list_runs()
    assert total == 2 and [r["run_id"] for r in runs] == ["b", "a"]  # newest first
    failed = next(r for r in runs if r["run_id"] == "b")
    assert failed["median_ms"] is None and failed["per_inference_mj"] is None
    assert [d["run_id"] for d in store.documents()] == ["a", "b"]  # oldest first
    assert [d["run_id"] for d in store.documents(RunFilter(mode="palette"))] == ["a"]
    assert store.list_runs(RunFilter(status="ok"))[1] == 1
    with pytest.raises(ConfigError, match="limit"):
        store.list_runs(limit=0)
    with pytest.raises(ConfigError, match="not a date"):
        RunFilter(since="yesterday")


def test_canonical_json_ignores_key_order_and_refuses_nan():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_bad_urls_and_folders_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        ResultStore("no-such-scheme")
    with pytest.raises(ConfigError, match="does not exist"):
        ResultStore(f"sqlite:///{tmp_path / 'missing' / 'runs.db'}")


def test_a_file_that_is_not_a_database_is_unavailable_not_a_crash(tmp_path):
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailableError, match="runs.db"):
        ResultStore(f"sqlite:///{path}")


@pytest.mark.postgres
def test_postgresql_store(result_doc, postgres_url):
    store = ResultStore(postgres_url)
    run_id = f"pg-{os.getpid()}"
    try:
        assert store.add(result_doc(run_id)).stored
        assert store.add(result_doc(run_id)).duplicate
        assert store.get(run_id)["run_id"] == run_id
        assert any(r["run_id"] == run_id for r in store.list_runs(RunFilter(device="Pixel 8"), limit=1000)[0])
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM runs WHERE run_id = %(r)s", {"r": run_id})
        store.close()
