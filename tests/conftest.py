"""Shared fixtures for the service tests: real PostgreSQL, Redis, SQLite files and Celery workers.

PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis (127.0.0.1:6379)
must be running; override with NETGROW_TEST_PG_ADMIN_URL / NETGROW_TEST_REDIS_URL.
Every database a test uses is created here from a migrated template and dropped
afterwards, so tests never see each other's jobs.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("NETGROW_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NETGROW_TEST_REDIS_URL", "redis://127.0.0.1:6379")
WORKER_START_TIMEOUT = 60.0


# --------------------------------------------------------------------------- waiting


def wait_until(predicate: Callable[[], object], *, timeout: float = 60.0, interval: float = 0.05,
               message: str = "condition") -> object:
    """Poll until ``predicate()`` is truthy and return its value; fail the test after ``timeout``.

    The timeout only guards against a hang: no test asserts how fast anything is.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def wait() -> Callable[..., object]:
    return wait_until


# --------------------------------------------------------------------------- PostgreSQL


def _pg_admin():
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)


def _pg_url(name: str) -> str:
    from sqlalchemy import make_url

    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_pg_database(template: str | None = None) -> str:
    """A new database named ``netgrow_test_<random>`` (a copy of ``template`` if given); returns its URL."""
    from sqlalchemy import text

    name = f"netgrow_test_{uuid.uuid4().hex[:12]}"
    engine = _pg_admin()
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    engine.dispose()
    return _pg_url(name)


def drop_pg_database(url: str) -> None:
    from sqlalchemy import make_url, text

    from worker.store.session import dispose_engines

    dispose_engines()
    engine = _pg_admin()
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """The name of a database migrated to head, used only as a CREATE DATABASE template."""
    from sqlalchemy import make_url

    from worker.store.migrate import upgrade

    url = create_pg_database()
    upgrade(url)  # migrate() disposes its engine: a template must have no open connections
    yield make_url(url).database
    drop_pg_database(url)


@pytest.fixture(scope="session")
def pg_url(pg_template: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head, shared by the whole test session."""
    url = create_pg_database(template=pg_template)
    yield url
    drop_pg_database(url)


@pytest.fixture
def fresh_pg_url(pg_template: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head for this test alone."""
    url = create_pg_database(template=pg_template)
    yield url
    drop_pg_database(url)


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database (never migrated)."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


# --------------------------------------------------------------------------- SQLite


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worker.store.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "netgrow.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    """A SQLite file migrated to head, for this test alone."""
    from worker.store.session import dispose_engines

    path = tmp_path / "netgrow.db"
    shutil.copyfile(sqlite_template, path)
    yield f"sqlite:///{path}"
    dispose_engines()


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that asks for it runs once per backend, on a database of its own."""
    return request.getfixturevalue("fresh_pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (never migrated), once per backend: for tests that walk through revisions."""
    if request.param == "postgresql":
        return request.getfixturevalue("empty_pg_url")
    return f"sqlite:///{tmp_path / 'empty.db'}"


# --------------------------------------------------------------------------- Redis


class NoFreeRedisDatabase(LookupError):
    """Every Redis database 1..15 is claimed by a test (of this run or another) or holds data."""


REDIS_TEST_DATABASES = range(1, 16)
# Claims live in database 0, which no test uses: a test that flushes its own database (as a Redis
# restart would) keeps its claim. A claim expires after an hour, longer than any test runs
# (pytest-timeout: 600 s), so a run killed without its teardown frees its database again, once the
# database is empty again (a database with keys left in it is skipped, claimed or not).
REDIS_CLAIM_KEY = "netgrow-test:claim:{number}"
REDIS_CLAIM_SECONDS = 3600
# Atomic compare-and-delete: a claim that expired and was taken by another run is not released.
_RELEASE_CLAIM = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@contextmanager
def claimed_redis_database(wait_seconds: float = 0.0) -> Iterator[str]:
    """Claim an empty Redis database (1–15) for as long as the block runs; flush and release it afterwards.

    Two test runs on one machine share the Redis server. Checking that a database is empty is not
    enough (both runs may pick the same one before either writes to it): a run first takes the
    database's claim key with SET NX, then checks that the database is empty. Raises
    ``NoFreeRedisDatabase`` when none is free within ``wait_seconds``.
    """
    import redis

    registry = redis.Redis.from_url(f"{REDIS_URL}/0")
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + wait_seconds
    try:
        while (claim := _claim_redis_database(registry, token)) is None:
            if time.monotonic() >= deadline:
                raise NoFreeRedisDatabase(f"no unclaimed, empty Redis database among {REDIS_TEST_DATABASES.start}.."
                                          f"{REDIS_TEST_DATABASES.stop - 1}")
            time.sleep(0.5)
        number, client = claim
        try:
            yield f"{REDIS_URL}/{number}"
        finally:
            client.flushdb()
            client.close()
            registry.eval(_RELEASE_CLAIM, 1, REDIS_CLAIM_KEY.format(number=number), token)
    finally:
        registry.close()


def _claim_redis_database(registry: redis.Redis, token: str) -> tuple[int, redis.Redis] | None:
    """``(number, client)`` of a database now claimed with ``token`` and empty, or None."""
    import redis

    candidates = list(REDIS_TEST_DATABASES)
    random.shuffle(candidates)  # concurrent runs rarely contend for the same claim
    for number in candidates:
        key = REDIS_CLAIM_KEY.format(number=number)
        if not registry.set(key, token, nx=True, ex=REDIS_CLAIM_SECONDS):
            continue
        client = redis.Redis.from_url(f"{REDIS_URL}/{number}")
        if client.dbsize() == 0:
            return number, client
        client.close()  # someone's data (or a killed run's): not ours to flush
        registry.eval(_RELEASE_CLAIM, 1, key, token)
    return None


@pytest.fixture
def redis_url() -> Iterator[str]:
    """An empty Redis database claimed for this test alone (``claimed_redis_database``), flushed afterwards."""
    with claimed_redis_database(wait_seconds=30) as url:  # another run may hold them all for a moment
        yield url


@pytest.fixture
def claim_redis_database() -> Callable[[], AbstractContextManager[str]]:
    """``claimed_redis_database`` itself (``wait_seconds=0``), for the test of the claims."""
    return claimed_redis_database


# --------------------------------------------------------------------------- settings


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., object]]:
    """``configure(database_url=..., broker_url=..., lease_seconds=...)`` sets NETGROW_* and returns the Settings.

    Every NETGROW_* variable of the calling shell is cleared first; the artifact
    and dataset directories default to folders in this test's tmp_path. Celery worker processes started
    afterwards inherit the same variables.
    """
    from worker.store.session import dispose_engines
    from worker.store.settings import get_settings

    for key in list(os.environ):
        if key.startswith("NETGROW_"):
            monkeypatch.delenv(key)

    def configure(**values: object):
        values.setdefault("artifact_dir", tmp_path / "artifacts")
        values.setdefault("data_dir", tmp_path / "datasets")
        for key, value in values.items():
            if value is None:
                monkeypatch.delenv(f"NETGROW_{key.upper()}", raising=False)
            else:
                monkeypatch.setenv(f"NETGROW_{key.upper()}", str(value))
        get_settings.cache_clear()
        return get_settings()

    yield configure
    get_settings.cache_clear()
    dispose_engines()


# --------------------------------------------------------------------------- Celery workers


class CeleryWorkers:
    """Real ``celery -A worker.runners.celery_app worker --pool=solo`` processes, logging to files."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *, env: dict[str, str] | None = None, wait_ready: bool = True,
              prefix: list[str] | None = None) -> subprocess.Popen[bytes]:
        """``prefix`` runs the worker under another command that execs it (``ip netns exec NS``)."""
        log_path = self.log_dir / f"celery-{name}.log"
        command = [*(prefix or []), sys.executable, "-m", "celery", "-A", "worker.runners.celery_app", "worker",
                   "--pool=solo",
                   "--concurrency=1", f"--hostname={name}@%h", "--loglevel=INFO",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]
        environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        process.log_path = log_path  # type: ignore[attr-defined]
        self.processes.append(process)
        if wait_ready:
            wait_until(lambda: process.poll() is not None or " ready." in log_path.read_text(errors="replace"),
                       timeout=WORKER_START_TIMEOUT, interval=0.1, message=f"celery worker {name} to start")
            if process.poll() is not None:
                pytest.fail(f"celery worker {name} exited with {process.returncode}:\n{self.log(process)}")
        return process

    @staticmethod
    def log(process: subprocess.Popen[bytes]) -> str:
        return Path(process.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no shutdown handlers, no acknowledgement, no lease release — a crashed host."""
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def close(self) -> None:
        for process in self.processes:
            self.kill(process)


@pytest.fixture
def celery_worker_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``start(name, env=None, wait_ready=True) -> Popen`` for a real Celery worker; all are killed at teardown.

    The worker inherits the NETGROW_* variables set with ``settings_env`` (call
    that first), plus ``env``. ``Popen.log_path`` is its log file.
    """
    workers = CeleryWorkers(tmp_path)
    yield workers.start
    workers.close()


@pytest.fixture
def celery_workers(tmp_path: Path) -> Iterator[CeleryWorkers]:
    """The same as ``celery_worker_process`` with the ``kill``/``log`` helpers at hand."""
    workers = CeleryWorkers(tmp_path)
    yield workers
    workers.close()
