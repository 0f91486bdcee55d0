"""Engines and sessions for the configured database (PostgreSQL or a SQLite file).

One engine per URL per process. SQLite gets WAL (readers never block the
worker's writes), foreign keys (ON DELETE CASCADE) and a busy timeout (the API,
the embedded runner and its heartbeat write to the same file); PostgreSQL goes
through psycopg 3.
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from .settings import get_settings
from .models import utcnow

SQLITE_BUSY_TIMEOUT_MS = 30_000

_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def normalize_url(url: str | URL) -> URL:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _finite(value: Any) -> Any:
    """NaN and ±inf become null: JSON has no such numbers and PostgreSQL's json type rejects them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def json_dumps(value: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False)


# An unreachable or partitioned server must show up as an error within seconds, not after the
# kernel's TCP timeouts (minutes): callers then answer 503 or wait for the database in a loop.
# A partitioned client cannot hold row locks for long either: an idle transaction ends after a minute.
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # ms: data sent and not acknowledged for this long breaks the connection
    "options": "-c idle_in_transaction_session_timeout=60000",
}


def make_engine(url: str | URL) -> Engine:
    """A new engine for ``url``; prefer ``get_engine()``, which shares one per URL."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, json_serializer=json_dumps, connect_args=POSTGRES_CONNECT_ARGS)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, json_serializer=json_dumps, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    finally:
        cursor.close()


def get_engine(url: str | URL | None = None) -> Engine:
    """The shared engine for ``url`` (default: ``get_settings().database_url``)."""
    key = normalize_url(url if url is not None else get_settings().database_url).render_as_string(hide_password=False)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(key)
        return engine


def session_factory(url: str | URL | None = None) -> sessionmaker[Session]:
    # expire_on_commit=False: objects returned by the data-access functions stay readable after commit.
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | URL | None = None) -> Iterator[Session]:
    """A session that is closed on exit; the caller commits (or the data-access function does)."""
    with session_factory(url)() as session:
        yield session


def dispose_engines() -> None:
    """Close every pooled connection (tests dropping a database, a process that forked)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


_NOW_KEY = "netgrow.database_now"  # Session.info: (the transaction, its now())


def database_now(session: Session) -> datetime:
    """The time by the database server's clock (aware, UTC): the one clock every host shares.

    Leases are written by one host and judged by another (a worker renews, any
    worker's reaper expires); reading both from the database means a host whose
    clock drifts can neither steal a live job nor keep a dead one. On PostgreSQL
    this is ``now()``, the start of the session's transaction: every stamp one
    unit of work writes is the same instant, read with one round trip per
    transaction (the ``worker.store.jobs`` functions each run their own, short transactions).
    SQLite lives on one machine, so its clock is the local one.
    """
    if session.get_bind().dialect.name == "sqlite":
        return utcnow()
    cached = session.info.get(_NOW_KEY)
    if cached is not None and cached[0] is session.get_transaction():
        return cached[1]
    now = session.scalar(select(func.now())).astimezone(UTC)  # begins the transaction if none is open
    session.info[_NOW_KEY] = (session.get_transaction(), now)
    return now
