"""Where result documents live: one ``runs`` table (SQLite by default, PostgreSQL for a farm).

Each row keeps the whole JSON document, its sha256 (of the canonical JSON) and the columns that
lists and reports filter or sort on. A ``run_id`` is stored once: the same document again is a
duplicate (accepted, nothing written), a different document under the same ``run_id`` is a
conflict (refused, nothing written). Each insert is one transaction, so nothing is stored half.

SQLite runs in WAL mode with a busy timeout. A database that stays locked past the timeout, or
whose file has been deleted or replaced under a running collector, raises
:class:`StoreUnavailableError` instead of writing into a ghost file: nothing already stored is
lost and the client keeps (and can resend) what it could not store.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.errors import ConfigError, ResultError

MAX_LIMIT = 1000


class StoreUnavailableError(ResultError):
    """The database cannot be used right now (locked, gone, unreachable); retry later."""


class RunConflictError(ResultError):
    """A run_id that is already stored with a different document."""


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(128), nullable=False)
    run_set: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    device_model: Mapped[str] = mapped_column(String(128), index=True)
    device_serial: Mapped[str | None] = mapped_column(String(128), index=True)
    simulated: Mapped[bool] = mapped_column(Boolean, index=True)
    model_name: Mapped[str | None] = mapped_column(String(256), index=True)
    format: Mapped[str | None] = mapped_column(String(16), index=True)
    mode: Mapped[str | None] = mapped_column(String(64), index=True)
    runtime_name: Mapped[str | None] = mapped_column(String(32))
    runtime_version: Mapped[str | None] = mapped_column(String(64))
    threads: Mapped[int | None] = mapped_column(Integer)
    delegate: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # UTC, naive
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)  # when the collector stored it
    median_ms: Mapped[float | None] = mapped_column(Float)
    p90_ms: Mapped[float | None] = mapped_column(Float)
    runs: Mapped[int | None] = mapped_column(Integer)
    energy_method: Mapped[str | None] = mapped_column(String(16))
    per_inference_mj: Mapped[float | None] = mapped_column(Float)
    document: Mapped[str] = mapped_column(Text, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (Index("ix_runs_run_id", "run_id", unique=True),)


SUMMARY_FIELDS = (
    "run_id", "run_set", "status", "device_model", "device_serial", "simulated", "model_name", "format",
    "mode", "runtime_name", "runtime_version", "threads", "delegate", "started_at", "created_at",
    "median_ms", "p90_ms", "runs", "energy_method", "per_inference_mj",
)


def canonical_json(doc: dict[str, Any]) -> str:
    """The one text form a document is hashed and stored in (sorted keys, no spaces)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def document_sha256(doc: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 with a zone -> naive UTC datetime (what the table stores)."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def parse_bound(value: str | None, *, end: bool) -> datetime | None:
    """A since/until filter: a date (whole day; ``until`` includes that day) or a date-time."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day)
            return start + timedelta(days=1) if end else start
        return parse_timestamp(text)
    except ValueError as err:
        raise ConfigError(
            f"date filter {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time",
            next_step="Use e.g. 2026-11-23 or 2026-11-23T04:00:00Z.",
        ) from err


@dataclass(frozen=True)
class RunFilter:
    """Filters for listing runs; ``None`` means "any". Dates apply to the run's started_at."""

    device: str | None = None  # device model or serial
    model: str | None = None
    format: str | None = None
    mode: str | None = None
    status: str | None = None
    simulated: bool | None = None
    since: str | None = None
    until: str | None = None
    run_set: str | None = None

    def __post_init__(self) -> None:
        # parse now so a bad date is reported before any query
        parse_bound(self.since, end=False)
        parse_bound(self.until, end=True)


@dataclass(frozen=True)
class AddOutcome:
    run_id: str
    stored: bool
    duplicate: bool
    sha256: str


def _row_from_document(doc: dict[str, Any], text: str, sha: str) -> dict[str, Any]:
    device = doc.get("device") or {}
    model = doc.get("model") or {}
    runtime = doc.get("runtime") or {}
    latency = doc.get("latency") or {}
    energy = doc.get("energy") or {}
    return dict(
        run_id=doc["run_id"],
        run_set=doc.get("run_set"),
        status=doc["status"],
        device_model=device.get("model", ""),
        device_serial=device.get("serial"),
        simulated=bool(device.get("simulated")),
        model_name=model.get("name"),
        format=model.get("format"),
        mode=model.get("mode"),
        runtime_name=runtime.get("name"),
        runtime_version=runtime.get("version"),
        threads=runtime.get("threads"),
        delegate=runtime.get("delegate"),
        started_at=parse_timestamp(doc["started_at"]),
        created_at=datetime.now(UTC).replace(tzinfo=None),
        median_ms=latency.get("median_ms"),
        p90_ms=latency.get("p90_ms"),
        runs=latency.get("runs"),
        energy_method=energy.get("method"),
        per_inference_mj=energy.get("per_inference_mj"),
        document=text,
        sha256=sha,
    )


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


_SUMMARY_COLUMNS = tuple(getattr(Run, name) for name in SUMMARY_FIELDS)


def _summary_of_row(row) -> dict[str, Any]:
    """A listing row (the summary columns only: the stored document is not read for lists)."""
    out = dict(zip(SUMMARY_FIELDS, row, strict=True))
    out["started_at"] = _iso(out["started_at"])
    out["created_at"] = _iso(out["created_at"])
    return out


class ResultStore:
    """The runs table behind one SQLAlchemy engine. Thread-safe (one session per call)."""

    def __init__(self, db_url: str, *, busy_timeout_s: float = 5.0, create: bool = True) -> None:
        if busy_timeout_s < 0:
            raise ConfigError(f"busy_timeout_s must be >= 0, got {busy_timeout_s}")
        try:
            url = make_url(db_url)
        except Exception as err:  # noqa: BLE001 - sqlalchemy raises ArgumentError
            raise ConfigError(
                f"database URL {db_url!r} is not a SQLAlchemy URL",
                next_step="Use sqlite:///runs.db or postgresql://user@host/db.",
            ) from err
        self.db_url = db_url
        self.busy_timeout_s = busy_timeout_s
        self._sqlite_path: Path | None = None
        self._sqlite_identity: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                self._sqlite_path = Path(url.database).resolve()
                if not self._sqlite_path.parent.is_dir():
                    raise ConfigError(
                        f"database folder {self._sqlite_path.parent} does not exist",
                        next_step="Create it or point --db at an existing folder.",
                    )
            self.engine: Engine = create_engine(
                db_url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
            )
            event.listen(self.engine, "connect", self._on_sqlite_connect)
        else:
            try:
                self.engine = create_engine(db_url, pool_pre_ping=True)
            except (ImportError, NoSuchModuleError, ArgumentError) as err:
                raise ConfigError(
                    f"cannot use the database URL {make_url(db_url).render_as_string(hide_password=True)} "
                    f"({type(err).__name__}: {err})",
                    next_step="Use sqlite:///PATH, or postgresql://USER@HOST/DB after "
                    "`pip install 'vit-palette-bench[postgres]'`.",
                ) from None
        if create:
            self._guard(self._create_tables, "create the runs table")
        if self._sqlite_path is not None:
            st = os.stat(self._sqlite_path)
            self._sqlite_identity = (st.st_dev, st.st_ino)
        self._adds_since_optimize = 0
        self._optimize()

    def _optimize(self) -> None:
        """Refresh SQLite's planner statistics (bounded work): without them a filter on a column with
        few values (mode, format) sorts every match instead of walking the started_at index."""
        if self._sqlite_path is None:
            return
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
                conn.exec_driver_sql("ANALYZE runs")
        except (OperationalError, DBAPIError):
            pass  # statistics are an optimisation only

    def _create_tables(self) -> None:
        """CREATE TABLE IF NOT EXISTS, safe when two processes open a new database at the same moment."""
        try:
            Base.metadata.create_all(self.engine)
        except (OperationalError, DBAPIError) as err:
            if "already exists" not in str(err).lower():
                raise
            Base.metadata.create_all(self.engine)

    def _on_sqlite_connect(self, dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        if self._sqlite_path is not None:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    # -- availability -------------------------------------------------------------------------
    def _check_file(self) -> None:
        """Refuse to work on a SQLite file that was deleted or replaced after we opened it."""
        if self._sqlite_path is None or self._sqlite_identity is None:
            return
        try:
            st = os.stat(self._sqlite_path)
        except FileNotFoundError:
            raise StoreUnavailableError(
                f"database file {self._sqlite_path} is gone (deleted or moved while the collector ran); "
                "nothing was stored",
                next_step="Put the file back (results already stored are in it) or restart the collector; "
                "the client keeps its result and can send it again.",
                path=str(self._sqlite_path),
            ) from None
        if (st.st_dev, st.st_ino) != self._sqlite_identity:
            raise StoreUnavailableError(
                f"database file {self._sqlite_path} was replaced by another file while the collector ran; "
                "nothing was stored",
                next_step="Restart the collector to use the new file; the client can send its result again.",
                path=str(self._sqlite_path),
            )

    def _guard(self, fn, what: str):
        try:
            return fn()
        except (OperationalError, DBAPIError) as err:
            if isinstance(err, IntegrityError):
                raise
            text = str(getattr(err, "orig", err)).strip() or type(err).__name__
            where = self._sqlite_path or make_url(self.db_url).render_as_string(hide_password=True)
            raise StoreUnavailableError(
                f"database {where} cannot {what}: {text}; nothing was stored",
                next_step="Retry in a moment (the client keeps its result); if it persists, check that the database is up "
                "and that no other program holds a lock on it.",
                reason=text,
            ) from err

    # -- writes -------------------------------------------------------------------------------
    def add(self, doc: dict[str, Any]) -> AddOutcome:
        """Store one (already validated) result document; idempotent by run_id."""
        text = canonical_json(doc)
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        run_id = doc["run_id"]
        self._check_file()

        def attempt() -> AddOutcome:
            try:
                # Core insert, one transaction: a third of the ORM's cost, and the row is all or nothing
                with self.engine.begin() as conn:
                    conn.execute(insert(Run.__table__), [_row_from_document(doc, text, sha)])
                with self._lock:
                    self._adds_since_optimize += 1
                    due = self._adds_since_optimize >= 1000
                    if due:
                        self._adds_since_optimize = 0
                if due:
                    self._optimize()
                return AddOutcome(run_id, stored=True, duplicate=False, sha256=sha)
            except IntegrityError:
                pass
            with self.engine.connect() as conn:
                existing = conn.execute(select(Run.sha256).where(Run.run_id == run_id)).scalar()
            if existing is None:  # pragma: no cover - unique violation on another column
                raise ResultError(f"run {run_id} could not be stored: integrity error")
            if existing == sha:
                return AddOutcome(run_id, stored=False, duplicate=True, sha256=sha)
            raise RunConflictError(
                f"run_id {run_id} is already stored with a different document "
                f"(stored sha256 {existing[:12]}..., this one {sha[:12]}...)",
                next_step="Give a new run a new run_id; a stored run is never overwritten.",
                run_id=run_id, stored_sha256=existing, sha256=sha,
            )

        return self._guard(attempt, f"store run {run_id}")

    # -- reads --------------------------------------------------------------------------------
    def _filtered(self, stmt, flt: RunFilter):
        if flt.device:
            stmt = stmt.where((Run.device_model == flt.device) | (Run.device_serial == flt.device))
        if flt.model:
            stmt = stmt.where(Run.model_name == flt.model)
        if flt.format:
            stmt = stmt.where(Run.format == flt.format)
        if flt.mode:
            stmt = stmt.where(Run.mode == flt.mode)
        if flt.status:
            stmt = stmt.where(Run.status == flt.status)
        if flt.simulated is not None:
            stmt = stmt.where(Run.simulated == flt.simulated)
        if flt.run_set:
            stmt = stmt.where(Run.run_set == flt.run_set)
        since = parse_bound(flt.since, end=False)
        until = parse_bound(flt.until, end=True)
        if since is not None:
            stmt = stmt.where(Run.started_at >= since)
        if until is not None:
            stmt = stmt.where(Run.started_at < until if flt.until and len(flt.until.strip()) == 10
                              else Run.started_at <= until)
        return stmt

    def list_runs(self, flt: RunFilter | None = None, *, limit: int = 100, offset: int = 0
                  ) -> tuple[list[dict[str, Any]], int]:
        """Summaries of the matching runs (newest first) and the total number matching."""
        flt = flt or RunFilter()
        if not 1 <= limit <= MAX_LIMIT:
            raise ConfigError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if offset < 0:
            raise ConfigError(f"offset must be >= 0, got {offset}")
        self._check_file()

        def query():
            with Session(self.engine) as session:
                total = session.scalar(self._filtered(select(func.count(Run.id)), flt))
                rows = session.execute(
                    self._filtered(select(*_SUMMARY_COLUMNS), flt)
                    .order_by(Run.started_at.desc(), Run.id.desc())
                    .limit(limit)
                    .offset(offset)
                ).all()
                return [_summary_of_row(r) for r in rows], int(total or 0)

        return self._guard(query, "list runs")

    def get_text(self, run_id: str) -> str | None:
        """The stored document for ``run_id`` as canonical JSON text, or None."""
        self._check_file()

        def query():
            with Session(self.engine) as session:
                return session.scalar(select(Run.document).where(Run.run_id == run_id))

        return self._guard(query, f"read run {run_id}")

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The stored document for ``run_id``, or None."""
        text = self.get_text(run_id)
        return None if text is None else json.loads(text)

    def documents(self, flt: RunFilter | None = None) -> list[dict[str, Any]]:
        """Every matching stored document, oldest first (for reports)."""
        flt = flt or RunFilter()
        self._check_file()

        def query():
            with Session(self.engine) as session:
                texts = session.scalars(
                    self._filtered(select(Run.document), flt).order_by(Run.started_at, Run.id)
                ).all()
            return [json.loads(t) for t in texts]

        return self._guard(query, "read runs")

    def count(self) -> int:
        self._check_file()

        def query():
            with Session(self.engine) as session:
                return int(session.scalar(select(func.count(Run.id))) or 0)

        return self._guard(query, "count runs")

    def close(self) -> None:
        self.engine.dispose()
