"""The collector over real HTTP: uvicorn in a thread on a loopback port, an httpx client."""

from __future__ import annotations

import json
import os
import sqlite3

import httpx
import pytest

from results.collector import start_collector_in_thread


def test_store_get_and_list(client, result_doc):
    doc = result_doc("run-a")
    resp = client.post("/api/v1/results", json=doc)
    assert resp.status_code == 201, resp.text
    assert resp.json()["stored"] is True and resp.json()["duplicate"] is False
    got = client.get("/api/v1/runs/run-a")
    assert got.status_code == 200 and got.json() == doc
    listing = client.get("/api/v1/runs").json()
    assert listing["total"] == 1
    (row,) = listing["runs"]
    assert row["run_id"] == "run-a" and row["simulated"] is True and row["median_ms"] == doc["latency"]["median_ms"]
    assert row["device_model"] == "Pixel 8" and row["runtime_name"] == "onnxruntime" and row["threads"] == 1
    assert client.get("/healthz").json() == {"status": "ok", "runs": 1}


def test_unknown_run_is_404_naming_it(client):
    resp = client.get("/api/v1/runs/nope-1")
    assert resp.status_code == 404 and "nope-1" in resp.json()["detail"]


def test_filters_narrow_the_list(client, result_doc):
    docs = [
        result_doc("f1", **{"model.mode": "dense", "device.model": "Pixel 8", "started_at": "2026-11-20T10:00:00Z",
                            "finished_at": "2026-11-20T10:01:00Z"}),
        result_doc("f2", **{"model.mode": "palette", "device.model": "Pixel 8", "run_set": "nightly-1"}),
        result_doc("f3", **{"model.mode": "palette", "device.model": "Pixel 7", "model.format": "tflite",
                            "runtime.name": "litert", "run_set": "nightly-1"}),
        result_doc("f4", **{"status": "load_failed", "latency": None, "energy": None,
                            "error": "truncated model file", "model.name": "timm:deit_tiny_patch16_224"}),
        result_doc("f5", **{"device.simulated": False, "energy.method": "battery", "device.serial": "ABC123"}),
    ]
    for d in docs:
        assert client.post("/api/v1/results", json=d).status_code == 201

    def ids(**params):
        body = client.get("/api/v1/runs", params=params).json()
        assert body["total"] == len(body["runs"]) or "limit" in params
        return sorted(r["run_id"] for r in body["runs"])

    assert ids() == ["f1", "f2", "f3", "f4", "f5"]
    assert ids(mode="palette") == ["f2", "f3"]
    assert ids(device="Pixel 7") == ["f3"]
    assert ids(device="ABC123") == ["f5"]
    assert ids(format="tflite") == ["f3"]
    assert ids(status="load_failed") == ["f4"]
    assert ids(model="timm:deit_tiny_patch16_224") == ["f4"]
    assert ids(simulated="false") == ["f5"]
    assert ids(simulated="true") == ["f1", "f2", "f3", "f4"]
    assert ids(run_set="nightly-1") == ["f2", "f3"]
    assert ids(run_set="nightly-1", mode="palette", device="Pixel 8") == ["f2"]
    assert ids(until="2026-11-20") == ["f1"]
    assert ids(since="2026-11-21") == ["f2", "f3", "f4", "f5"]
    assert ids(since="2026-11-20T09:00:00Z", until="2026-11-20T11:00:00Z") == ["f1"]
    page = client.get("/api/v1/runs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and len(page["runs"]) == 2
    bad = client.get("/api/v1/runs", params={"since": "last tuesday"})
    assert bad.status_code == 422 and "last tuesday" in bad.json()["detail"]
    assert client.get("/api/v1/runs", params={"simulated": "maybe"}).status_code == 422
    assert client.get("/api/v1/runs", params={"limit": 0}).status_code == 422


def test_same_document_twice_is_a_duplicate_not_a_second_row(client, result_doc):
    doc = result_doc("dup-1")
    assert client.post("/api/v1/results", json=doc).status_code == 201
    # key order and spacing do not matter: the canonical JSON is compared
    again = client.post("/api/v1/results", content=json.dumps(doc, indent=3, sort_keys=True).encode(),
                        headers={"content-type": "application/json"})
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["stored"] is False
    assert client.get("/api/v1/runs").json()["total"] == 1


def test_same_run_id_different_body_is_409_and_keeps_the_first(client, result_doc):
    first = result_doc("conflict-1")
    assert client.post("/api/v1/results", json=first).status_code == 201
    second = result_doc("conflict-1", **{"latency.median_ms": 99.0})
    resp = client.post("/api/v1/results", json=second)
    assert resp.status_code == 409 and "conflict-1" in resp.json()["detail"]
    assert client.get("/api/v1/runs/conflict-1").json() == first


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"schema_version": 1, "run_id": ', "not JSON"),
        (b"\xff\xfe not utf-8", "not JSON"),
        (b"[1, 2, 3]", "JSON object"),
    ],
)
def test_malformed_body_is_422(client, body, needle):
    resp = client.post("/api/v1/results", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422
    text = json.dumps(resp.json())
    assert needle in text and resp.json()["errors"]
    assert client.get("/api/v1/runs").json()["total"] == 0


def test_invalid_documents_are_422_with_every_reason(client, result_doc):
    wrong_version = result_doc("v2", schema_version=2)
    resp = client.post("/api/v1/results", json=wrong_version)
    assert resp.status_code == 422 and resp.json()["errors"][0].startswith("schema_version:")
    missing = result_doc("missing")
    del missing["device"], missing["latency"]
    resp = client.post("/api/v1/results", json=missing)
    errors = resp.json()["errors"]
    assert resp.status_code == 422 and any("'device'" in e for e in errors) and any("'latency'" in e for e in errors)
    assert "'missing'" in resp.json()["detail"]
    assert client.get("/api/v1/runs").json()["total"] == 0


def test_body_over_the_limit_is_413_with_or_without_content_length(tmp_path, result_doc):
    with start_collector_in_thread(f"sqlite:///{tmp_path / 'r.db'}", max_body_bytes=4096) as handle, \
            httpx.Client(base_url=handle.url) as c:
        big = result_doc("big", error=None, **{"latency.samples_ms": [1.0] * 2000, "latency.runs": 2000})
        resp = c.post("/api/v1/results", json=big)
        assert resp.status_code == 413 and "4096" in resp.json()["detail"]

        def chunks():
            for _ in range(10):
                yield b" " * 1000

        resp = c.post("/api/v1/results", content=chunks(), headers={"content-type": "application/json"})
        assert resp.status_code == 413
        small = result_doc("small")
        assert c.post("/api/v1/results", json=small).status_code == 201
        assert c.get("/api/v1/runs").json()["total"] == 1


def test_token_guards_writes_only(tmp_path, result_doc):
    with start_collector_in_thread(f"sqlite:///{tmp_path / 't.db'}", token="s3cret") as handle, \
            httpx.Client(base_url=handle.url) as c:
        doc = result_doc("tok-1")
        no_token = c.post("/api/v1/results", json=doc)
        assert no_token.status_code == 401 and "Bearer" in no_token.json()["detail"]
        assert no_token.headers["www-authenticate"] == "Bearer"
        wrong = c.post("/api/v1/results", json=doc, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        basic = c.post("/api/v1/results", json=doc, headers={"Authorization": "Basic s3cret"})
        assert basic.status_code == 403
        assert c.get("/api/v1/runs").json()["total"] == 0  # reads need no token
        ok = c.post("/api/v1/results", json=doc, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201


def test_locked_database_is_503_and_nothing_is_lost(collector, client, result_doc):
    assert client.post("/api/v1/results", json=result_doc("before-lock")).status_code == 201
    other = sqlite3.connect(collector.db_path, isolation_level=None, timeout=0.1)
    try:
        other.execute("BEGIN EXCLUSIVE")
        resp = client.post("/api/v1/results", json=result_doc("during-lock"))
        assert resp.status_code == 503, resp.text
        detail = resp.json()["detail"]
        assert "locked" in detail and "nothing was stored" in detail and "during-lock" in detail
        assert resp.headers.get("retry-after")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert client.get("/api/v1/runs/during-lock").status_code == 404
    # the client sends it again once the lock is gone: stored, and the earlier run is still there
    assert client.post("/api/v1/results", json=result_doc("during-lock")).status_code == 201
    assert sorted(r["run_id"] for r in client.get("/api/v1/runs").json()["runs"]) == ["before-lock", "during-lock"]


def test_database_file_moved_away_is_503_and_comes_back_whole(collector, client, result_doc):
    assert client.post("/api/v1/results", json=result_doc("kept-1")).status_code == 201
    moved = collector.db_path.with_suffix(".moved")
    os.rename(collector.db_path, moved)
    try:
        resp = client.post("/api/v1/results", json=result_doc("while-gone"))
        assert resp.status_code == 503 and "is gone" in resp.json()["detail"]
        assert str(collector.db_path) in resp.json()["detail"]
        assert client.get("/api/v1/runs").status_code == 503
        assert client.get("/healthz").status_code == 503
        assert not collector.db_path.exists(), "no empty database may be created in its place"
    finally:
        os.rename(moved, collector.db_path)
    assert client.get("/healthz").json()["runs"] == 1
    assert client.post("/api/v1/results", json=result_doc("while-gone")).status_code == 201
    assert client.get("/api/v1/runs").json()["total"] == 2


def test_database_file_deleted_is_503_not_a_ghost_write(collector, client, result_doc):
    assert client.post("/api/v1/results", json=result_doc("one")).status_code == 201
    os.remove(collector.db_path)
    resp = client.post("/api/v1/results", json=result_doc("two"))
    assert resp.status_code == 503
    assert "gone" in resp.json()["detail"] and "send it again" in resp.json()["detail"]
    assert not collector.db_path.exists()


def test_two_collectors_on_one_database_see_each_others_runs(tmp_path, result_doc):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with start_collector_in_thread(url) as a, start_collector_in_thread(url) as b, \
            httpx.Client() as c:
        assert a.port != b.port
        assert c.post(a.url + "/api/v1/results", json=result_doc("via-a")).status_code == 201
        assert c.post(b.url + "/api/v1/results", json=result_doc("via-a")).json()["duplicate"] is True
        assert c.get(b.url + "/api/v1/runs/via-a").status_code == 200


def test_command_line_collector_serves_and_stops(tmp_path, result_doc):
    import re
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "results.collector", "--db", f"sqlite:///{tmp_path / 'cli.db'}", "--port", "0",
         "--token", "t0k", "--log-level", "warning"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + proc.stderr.read()
        url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        doc = result_doc("cli-1")
        assert httpx.post(url + "/api/v1/results", json=doc).status_code == 401
        assert httpx.post(url + "/api/v1/results", json=doc, headers={"Authorization": "Bearer t0k"}).status_code == 201
        assert "vit-palette" in httpx.get(url + "/").text
    finally:
        proc.terminate()
        proc.wait(10)
    assert (tmp_path / "cli.db").exists()


def test_command_line_reports_a_bad_database_folder(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-m", "results.collector", "--db", f"sqlite:///{tmp_path / 'nope' / 'x.db'}", "--port", "0"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2 and out.stderr.startswith("error: database folder") and "Traceback" not in out.stderr


@pytest.mark.parametrize("body", [b'{"x": NaN}', b"[" * 100000 + b"]" * 100000])
def test_nan_and_absurd_nesting_are_422_not_500(client, body):
    resp = client.post("/api/v1/results", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422 and resp.json()["errors"]
