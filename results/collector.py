"""The result collector: a small HTTP service that receives, stores and shows result documents.

    python -m results.collector --db sqlite:///runs.db --port 8765 [--token T] [--host 127.0.0.1]

Endpoints (JSON unless said):
- ``POST /api/v1/results``: one result document. 201 stored, 200 ``duplicate: true`` (same
  run_id, same document), 409 (same run_id, different document), 422 with ``errors`` (malformed
  JSON, wrong schema_version, missing or wrong fields), 413 (body over the limit), 401/403 (token),
  503 (database locked or gone; nothing stored, send again later).
- ``GET /api/v1/runs``: summaries, newest first; filters device, model, format, mode, status,
  simulated, since, until, run_set, limit, offset.
- ``GET /api/v1/runs/{run_id}``: the stored document (404 when unknown).
- ``GET /api/v1/trends``: per configuration (device, model, format, mode, threads) its figures
  over the latest nights (run sets); filters device, model, format, mode, threads, limit_nights.
- ``GET /healthz``; ``GET /``: the dashboard (HTML with inline JS, no CDN).

Tests and the deploy command start it in a thread with :func:`start_collector_in_thread`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pipeline.errors import ConfigError, ResultError
from results.dashboard import DASHBOARD_HTML
from results.schema import validate_result
from results.store import ResultStore, RunConflictError, RunFilter, StoreUnavailableError
from results.trends import DEFAULT_LIMIT_NIGHTS, MAX_LIMIT_NIGHTS, TrendFilter, store_trends

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_PORT = 8765


def _parse_bool(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"filter {name}={value!r} is not a boolean; allowed: true, false")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number; send null for a figure that was not measured")


def _validate_and_store(store: ResultStore, doc: Any):
    errors = validate_result(doc)
    if errors:
        return errors, None
    return [], store.add(doc)


def create_app(
    db_url: str,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    *,
    busy_timeout_s: float = 5.0,
    store: ResultStore | None = None,
):
    """The FastAPI app over a :class:`ResultStore` at ``db_url`` (or the given ``store``)."""
    if max_body_bytes < 1024:
        raise ConfigError(f"max_body_bytes must be >= 1024, got {max_body_bytes}")
    store = store or ResultStore(db_url, busy_timeout_s=busy_timeout_s)
    app = FastAPI(title="vit-palette result collector", version="1", docs_url="/docs", redoc_url=None)
    app.state.store = store

    def unavailable(err: StoreUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "5"})

    def check_token(request: Request) -> JSONResponse | None:
        if token is None:
            return None
        header = request.headers.get("authorization")
        if not header:
            return JSONResponse(
                {"detail": "this collector needs a bearer token for writes: send 'Authorization: Bearer <token>'"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = header.partition(" ")
        import hmac

        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return JSONResponse(
                {"detail": "the bearer token is not the one this collector was started with (--token)"},
                status_code=403,
            )
        return None

    def too_large(size: int | str) -> JSONResponse:
        return JSONResponse(
            {"detail": f"request body of {size} bytes is over this collector's limit of {max_body_bytes} "
                       "bytes; a result document is far smaller: check what is being sent"},
            status_code=413,
        )

    @app.post("/api/v1/results")
    async def post_result(request: Request):
        denied = check_token(request)
        if denied is not None:
            return denied
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return too_large(int(length))
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return too_large(f"more than {max_body_bytes}")
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as err:
            return JSONResponse(
                {"detail": "the body is not JSON (UTF-8, no NaN or Infinity)", "errors": [f"(body): {err}"]},
                status_code=422,
            )
        # validation is the heaviest step (~2 ms): off the event loop, with the insert, in one hop
        try:
            errors, outcome = await run_in_threadpool(_validate_and_store, store, doc)
        except StoreUnavailableError as err:
            return unavailable(err)
        except RunConflictError as err:
            return JSONResponse({"detail": str(err), "run_id": doc["run_id"]}, status_code=409)
        if errors:
            run_id = doc.get("run_id") if isinstance(doc, dict) else None
            return JSONResponse(
                {"detail": f"result document{' ' + repr(run_id) if run_id else ''} is invalid; nothing stored",
                 "errors": errors},
                status_code=422,
            )
        body_out = {"run_id": outcome.run_id, "stored": outcome.stored, "duplicate": outcome.duplicate,
                    "sha256": outcome.sha256}
        return JSONResponse(body_out, status_code=201 if outcome.stored else 200)

    @app.get("/api/v1/runs")
    def list_runs(
        device: str | None = None,
        model: str | None = None,
        format: str | None = None,  # noqa: A002 - the query parameter's name
        mode: str | None = None,
        status: str | None = None,
        simulated: str | None = None,
        since: str | None = None,
        until: str | None = None,
        run_set: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ):
        try:
            flt = RunFilter(
                device=device or None, model=model or None, format=format or None, mode=mode or None,
                status=status or None, simulated=_parse_bool(simulated, "simulated"),
                since=since or None, until=until or None, run_set=run_set or None,
            )
            runs, total = store.list_runs(flt, limit=limit, offset=offset)
        except StoreUnavailableError as err:
            return unavailable(err)
        except ConfigError as err:
            return JSONResponse({"detail": str(err), "errors": [str(err)]}, status_code=422)
        # JSONResponse directly: FastAPI's generic encoder costs more than the query here
        return JSONResponse({"total": total, "limit": limit, "offset": offset, "runs": runs})

    @app.get("/api/v1/runs/{run_id}")
    def get_run(run_id: str):
        try:
            text = store.get_text(run_id)
        except StoreUnavailableError as err:
            return unavailable(err)
        if text is None:
            return JSONResponse({"detail": f"no run with run_id {run_id!r} is stored here"}, status_code=404)
        return Response(text.encode("utf-8"), media_type="application/json")

    @app.get("/api/v1/trends")
    def get_trends(
        device: str | None = None,
        model: str | None = None,
        format: str | None = None,  # noqa: A002 - the query parameter's name
        mode: str | None = None,
        threads: int | None = Query(None, ge=1),
        limit_nights: int = Query(DEFAULT_LIMIT_NIGHTS, ge=1, le=MAX_LIMIT_NIGHTS),
    ):
        try:
            flt = TrendFilter(device=device or None, model=model or None, format=format or None,
                              mode=mode or None, threads=threads, limit_nights=limit_nights)
            data = store_trends(store, flt)
        except StoreUnavailableError as err:
            return unavailable(err)
        except ConfigError as err:
            return JSONResponse({"detail": str(err), "errors": [str(err)]}, status_code=422)
        return JSONResponse(data)

    @app.get("/healthz")
    def healthz():
        try:
            count = store.count()
        except StoreUnavailableError as err:
            return unavailable(err)
        return JSONResponse({"status": "ok", "runs": count})

    @app.get("/", response_class=HTMLResponse)
    def dashboard():
        return HTMLResponse(DASHBOARD_HTML)

    return app


@dataclass
class CollectorHandle:
    """A collector running in a background thread; ``url`` is its base URL."""

    url: str
    host: str
    port: int
    app: Any
    _server: Any
    _thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        store = getattr(self.app.state, "store", None)
        if store is not None:
            store.close()

    def __enter__(self) -> CollectorHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_collector_in_thread(
    db_url: str,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    busy_timeout_s: float = 5.0,
    startup_timeout_s: float = 15.0,
) -> CollectorHandle:
    """Start uvicorn serving :func:`create_app` on ``host:port`` (0 = a free port) in a thread."""
    import uvicorn

    app = create_app(db_url, token=token, max_body_bytes=max_body_bytes, busy_timeout_s=busy_timeout_s)
    sock = _bind(host, port)
    real_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"collector:{real_port}")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise ResultError(
                f"the collector on {host}:{real_port} did not start within {startup_timeout_s} s",
                next_step="Run with --debug to see uvicorn's log.",
            )
        time.sleep(0.01)
    url_host = f"[{host}]" if ":" in host else host
    return CollectorHandle(f"http://{url_host}:{real_port}", host, real_port, app, server, thread)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it each response waits ~40 ms for a delayed ACK (20 requests/s instead of 100s).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {err.strerror}",
            next_step="Pick another --port (or 0 for a free one) or stop the program using it.",
        ) from err
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


_ENV_DB, _ENV_TOKEN = "VITPALETTE_COLLECTOR_DB", "VITPALETTE_COLLECTOR_TOKEN"
_ENV_MAX_BODY, _ENV_BUSY = "VITPALETTE_COLLECTOR_MAX_BODY_BYTES", "VITPALETTE_COLLECTOR_BUSY_TIMEOUT_S"


def app_from_env():
    """App factory for ``--workers N`` (each uvicorn worker process builds its own app)."""
    return create_app(os.environ[_ENV_DB], token=os.environ.get(_ENV_TOKEN) or None,
                      max_body_bytes=int(os.environ.get(_ENV_MAX_BODY, DEFAULT_MAX_BODY_BYTES)),
                      busy_timeout_s=float(os.environ.get(_ENV_BUSY, "5")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m results.collector", description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite:///runs.db", help="SQLAlchemy URL (default sqlite:///runs.db)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for phones on Wi-Fi)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--token", default=None, help="bearer token required for POST")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--busy-timeout-s", type=float, default=5.0)
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn log level; below info the access log is off")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the port (SQLite in WAL mode takes writes from all)")
    args = parser.parse_args(argv)
    import uvicorn

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.workers > 1:
        ResultStore(args.db, busy_timeout_s=args.busy_timeout_s).close()  # create the table once, report errors here
        os.environ.update({_ENV_DB: args.db, _ENV_MAX_BODY: str(args.max_body_bytes),
                           _ENV_BUSY: str(args.busy_timeout_s)})
        if args.token:
            os.environ[_ENV_TOKEN] = args.token
        print(f"collector: http://{args.host}:{args.port}/ (db {args.db}, {args.workers} workers); Ctrl-C stops it",
              flush=True)
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config("results.collector:app_from_env", factory=True, workers=args.workers,
                                log_level=args.log_level, lifespan="off",
                                access_log=args.log_level in ("info", "debug"))
        # our own socket (TCP_NODELAY, see _bind) shared by the worker processes
        Multiprocess(config, sockets=[_bind(args.host, args.port)]).run()
        return 0
    app = create_app(args.db, token=args.token, max_body_bytes=args.max_body_bytes,
                     busy_timeout_s=args.busy_timeout_s)
    sock = _bind(args.host, args.port)
    print(f"collector: http://{args.host}:{sock.getsockname()[1]}/ (db {args.db}); Ctrl-C stops it", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, lifespan="off",
                                           access_log=args.log_level in ("info", "debug")))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    from pipeline.cli_support import run_cli

    raise SystemExit(run_cli(main))
