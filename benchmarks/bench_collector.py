"""How fast the collector stores results over HTTP with SQLite, and lists them at 10,000 runs.

    .venv/bin/python -m benchmarks.bench_collector [--results 2000] [--settings 1:1,1:4,2:4] [--fill 10000]

The collector runs as its own process (``python -m results.collector``, as users run it) on a
loopback port with a fresh SQLite file; clients are pooled ``httpx.Client`` objects on threads.
Each POST is a full, schema-valid result document (the shared ``ok_simulated_onnx`` fixture with
a new run_id, ~2 KB). Figures printed: results stored per second for each setting of server
processes and client threads (goal: >= 300/s), then, after filling the store to ``--fill`` runs, the latency of
``GET /api/v1/runs`` (default page of 100, a filtered page, a page of 1000) and of one run by id.
Run by hand; the numbers depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "contracts" / "result" / "valid" / "ok_simulated_onnx.json"
GOAL_PER_S = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(db_url: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "results.collector", "--db", db_url, "--port", str(port), "--log-level", "warning",
         "--workers", str(workers)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"collector did not start: {proc.stderr.read().decode()[-2000:]}")


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def documents(prefix: str, n: int, base: dict) -> list[bytes]:
    modes = ("dense", "palette", "palette-int8")
    devices = ("Pixel 8", "Pixel 7", "Galaxy S23")
    out = []
    for i in range(n):
        doc = copy.deepcopy(base)
        doc["run_id"] = f"{prefix}-{i:06d}"
        doc["model"]["mode"] = modes[i % 3]
        doc["device"]["model"] = devices[(i // 3) % 3]
        out.append(json.dumps(doc).encode())
    return out


def post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    """POST every body with ``concurrency`` pooled clients; (seconds, failures)."""
    failures = 0
    lock = threading.Lock()
    chunks = [bodies[i::concurrency] for i in range(concurrency)]

    def worker(part: list[bytes]) -> None:
        nonlocal failures
        bad = 0
        with httpx.Client(base_url=url, timeout=30, headers={"content-type": "application/json"}) as client:
            for body in part:
                if client.post("/api/v1/results", content=body).status_code != 201:
                    bad += 1
        with lock:
            failures += bad

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, failures


def timed_gets(client: httpx.Client, path: str, params: dict, repeat: int) -> tuple[float, float, int]:
    """(median ms, p90 ms, rows in the last answer)."""
    client.get(path, params=params)  # warm
    times = []
    rows = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows = len(body["runs"]) if "runs" in body else 1
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=2000, help="POSTs per setting")
    parser.add_argument("--settings", default="1:1,1:4",
                        help="comma-separated WORKERS:CLIENTS pairs (server processes : client threads)")
    parser.add_argument("--fill", type=int, default=10_000, help="stored runs for the read test")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    base = json.loads(FIXTURE.read_text())
    settings = [tuple(int(x) for x in pair.split(":")) for pair in args.settings.split(",")]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; collector as a separate "
          f"process on loopback, fresh SQLite (WAL) per setting; document {len(json.dumps(base))} bytes")
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        for n, (workers, clients) in enumerate(settings):
            db_url = f"sqlite:///{Path(tmp) / f'runs{n}.db'}"
            proc, url = start_collector(db_url, workers)
            try:
                bodies = documents(f"w{workers}c{clients}", args.results, base)
                cpu0 = cpu_s(proc.pid) if workers == 1 else None
                seconds, failures = post_all(url, bodies, clients)
                cpu1 = cpu_s(proc.pid) if workers == 1 else None
                rate = (len(bodies) - failures) / seconds
                cpu_note = ""
                if cpu0 is not None and cpu1 is not None:
                    per = (cpu1 - cpu0) / len(bodies) * 1000
                    cpu_note = f"; server CPU {per:.2f} ms per result (one idle core: ~{1000 / per:.0f}/s)"
                print(f"store over HTTP, {workers} server process(es), {clients} client(s): {rate:7.1f} results/s "
                      f"({len(bodies)} in {seconds:.2f} s, {failures} failed) -> {rate / GOAL_PER_S:.2f}x the "
                      f"{GOAL_PER_S:.0f}/s goal{cpu_note}; load average {os.getloadavg()[0]:.2f}")
                if n < len(settings) - 1:
                    continue
                stored = len(bodies) - failures
                if args.fill > stored:
                    t0 = time.perf_counter()
                    post_all(url, documents("fill", args.fill - stored, base), max(clients, 2))
                    print(f"filled to {args.fill} runs over HTTP in {time.perf_counter() - t0:.1f} s")
                with httpx.Client(base_url=url, timeout=30) as client:
                    total = client.get("/api/v1/runs", params={"limit": 1}).json()["total"]
                    print(f"read latency at {total} stored runs ({args.repeat} requests each, one pooled client, "
                          f"load average now {os.getloadavg()[0]:.2f}):")
                    first = json.loads(bodies[1])["run_id"]
                    cases = [
                        ("GET /api/v1/runs (newest 100)", "/api/v1/runs", {}),
                        ("GET /api/v1/runs?mode=palette&device=Pixel 7", "/api/v1/runs",
                         {"mode": "palette", "device": "Pixel 7"}),
                        ("GET /api/v1/runs?limit=1000", "/api/v1/runs", {"limit": 1000}),
                        ("GET /api/v1/runs?offset=<last 100>", "/api/v1/runs", {"offset": max(0, total - 100)}),
                        ("GET /api/v1/runs/{run_id}", f"/api/v1/runs/{first}", {}),
                    ]
                    for label, path, params in cases:
                        c0 = cpu_s(proc.pid) if workers == 1 else None
                        med, p90, rows = timed_gets(client, path, params, args.repeat)
                        c1 = cpu_s(proc.pid) if workers == 1 else None
                        cpu = (f"; server CPU {(c1 - c0) / (args.repeat + 1) * 1000:6.2f} ms/request"
                               if c0 is not None and c1 is not None else "")
                        print(f"  {label:48s} median {med:7.2f} ms  p90 {p90:7.2f} ms  ({rows} rows){cpu}")
            finally:
                proc.terminate()
                proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
