"""Phone leases: two nightly processes (on one host or many) never use the same phone at once.

A lease is a row of the ``phone_leases`` table in the results database (SQLite for one host,
PostgreSQL for a farm of hosts): ``phone_id`` (primary key), ``holder_id``, ``expires_at``
(seconds since the epoch, UTC; hosts sharing a database keep their clocks in sync with NTP).

- Acquire is one atomic statement: ``INSERT`` a new row, or, when the row exists, ``UPDATE ...
  WHERE phone_id = :p AND (expires_at < :now OR holder_id = :me)``; the lease is ours when one
  row was written. Two processes racing for a phone cannot both win: the database serialises
  the insert (primary key) and the conditional update (row lock / SQLite's write lock).
- A heartbeat thread renews every held lease (``ttl_s / 3``); a holder that dies (killed, host
  lost) stops renewing, its lease expires ``ttl_s`` later and another process takes the phone.
- A renewal that finds the row gone or taken marks the lease lost; the scheduler stops giving
  that phone jobs (the job running on it still ends with one stored result).
"""

from __future__ import annotations

import os
import platform
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import (
    Column,
    Float,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from pipeline.errors import ConfigError, ResultError

metadata = MetaData()
phone_leases = Table(
    "phone_leases",
    metadata,
    Column("phone_id", String(256), primary_key=True),
    Column("holder_id", String(256), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("acquired_at", Float, nullable=False),
)


class LeaseError(ResultError):
    """The lease database cannot be used."""


def new_holder_id() -> str:
    """host:pid:random: unique per nightly process, readable in the table."""
    return f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _engine(db_url: str) -> Engine:
    try:
        url = make_url(db_url)
    except Exception as err:  # noqa: BLE001 - sqlalchemy raises ArgumentError
        raise ConfigError(f"lease database URL {db_url!r} is not a SQLAlchemy URL",
                          next_step="Use sqlite:///PATH/leases.db or postgresql://user@host/db.") from err
    if url.get_backend_name() == "sqlite":
        engine = create_engine(db_url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            if url.database and url.database != ":memory:":
                cur.execute("PRAGMA journal_mode = WAL")
            cur.close()

        return engine
    return create_engine(db_url, pool_pre_ping=True)


class LeaseManager:
    """Acquire, renew (heartbeat thread) and release phone leases for one holder."""

    def __init__(self, db_url: str, *, holder_id: str | None = None, ttl_s: float = 60.0,
                 heartbeat_s: float | None = None, clock: Callable[[], float] = time.time,
                 on_lost: Callable[[str], None] | None = None) -> None:
        if ttl_s <= 0:
            raise ConfigError(f"lease ttl_s must be > 0, got {ttl_s}")
        self.db_url = db_url
        self.holder_id = holder_id or new_holder_id()
        self.ttl_s = float(ttl_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else self.ttl_s / 3.0
        self.clock = clock
        self.on_lost = on_lost
        self.engine = _engine(db_url)
        self._held: set[str] = set()
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard(self._create_table, "create the phone_leases table")

    def _create_table(self) -> None:
        """CREATE TABLE IF NOT EXISTS, safe when two nightly processes start at the same moment."""
        try:
            metadata.create_all(self.engine)
        except (OperationalError, DBAPIError) as err:
            if "already exists" not in str(err).lower():
                raise
            metadata.create_all(self.engine)  # the other process won the race; now it is there

    def _guard(self, fn, what: str):
        try:
            return fn()
        except (OperationalError, DBAPIError) as err:
            if isinstance(err, IntegrityError):
                raise
            where = make_url(self.db_url).render_as_string(hide_password=True)
            raise LeaseError(f"lease database {where} cannot {what}: {getattr(err, 'orig', err)}",
                             next_step="Check that the database is up and reachable (--lease-db).") from err

    # -- one lease -------------------------------------------------------------------------------
    def try_acquire(self, phone_id: str) -> bool:
        """Take the lease on ``phone_id`` when it is free, expired or already ours. Never blocks."""
        now = self.clock()
        values = {"holder_id": self.holder_id, "expires_at": now + self.ttl_s, "acquired_at": now}

        def attempt() -> bool:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(phone_leases).values(phone_id=phone_id, **values))
                return True
            except IntegrityError:
                pass
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(phone_leases)
                    .where(phone_leases.c.phone_id == phone_id)
                    .where((phone_leases.c.expires_at < now) | (phone_leases.c.holder_id == self.holder_id))
                    .values(**values)
                )
                return res.rowcount == 1

        got = self._guard(attempt, f"lease phone {phone_id}")
        if got:
            with self._lock:
                self._held.add(phone_id)
                self._lost.discard(phone_id)
            self._ensure_heartbeat()
        return got

    def acquire(self, phone_id: str, *, wait_s: float, poll_s: float = 1.0,
                should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Try until the lease is ours, ``wait_s`` has passed or ``should_stop()`` says give up."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.try_acquire(phone_id):
                return True
            if time.monotonic() >= deadline or should_stop():
                return False
            time.sleep(poll_s)

    def renew(self, phone_id: str) -> bool:
        """Push the expiry forward; False (and the lease marked lost) when it is no longer ours."""
        now = self.clock()

        def attempt() -> bool:
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(phone_leases)
                    .where(phone_leases.c.phone_id == phone_id)
                    .where(phone_leases.c.holder_id == self.holder_id)
                    .values(expires_at=now + self.ttl_s)
                )
                return res.rowcount == 1

        ok = self._guard(attempt, f"renew the lease on {phone_id}")
        if not ok:
            with self._lock:
                self._held.discard(phone_id)
                self._lost.add(phone_id)
            if self.on_lost:
                self.on_lost(phone_id)
        return ok

    def release(self, phone_id: str) -> None:
        with self._lock:
            self._held.discard(phone_id)

        def attempt() -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(phone_leases).where(phone_leases.c.phone_id == phone_id)
                             .where(phone_leases.c.holder_id == self.holder_id))

        self._guard(attempt, f"release the lease on {phone_id}")

    def holds(self, phone_id: str) -> bool:
        with self._lock:
            return phone_id in self._held

    def lost(self, phone_id: str) -> bool:
        with self._lock:
            return phone_id in self._lost

    def holder_of(self, phone_id: str) -> tuple[str, float] | None:
        """(holder_id, expires_at) of the row, expired or not; None when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(phone_leases.c.holder_id, phone_leases.c.expires_at)
                               .where(phone_leases.c.phone_id == phone_id)).first()
        return None if row is None else (row[0], float(row[1]))

    # -- heartbeat -------------------------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat:{self.holder_id}",
                                            daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                held = sorted(self._held)
            for phone_id in held:
                try:
                    self.renew(phone_id)
                except LeaseError:
                    # the database is unreachable for a moment: keep trying until the lease would expire
                    continue

    def close(self) -> None:
        """Release every held lease and stop the heartbeat."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            held = sorted(self._held)
        for phone_id in held:
            try:
                self.release(phone_id)
            except LeaseError:
                pass  # it expires by itself
        self.engine.dispose()

    def __enter__(self) -> LeaseManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
