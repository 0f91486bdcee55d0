"""API latency under load: GET /v1/jobs/{id} and GET /v1/jobs/{id}/history at 32 concurrent clients.

    python bench/api_load.py [--requests 2000] [--concurrency 32] [--seconds 60]

Against PostgreSQL (a scratch database created and dropped here): one job with
200 epochs × 16 layers of history, written through the worker's own write path
(``worker.store.jobs.record_epoch``); then the real server (``netgrow serve`` in a
separate process, so client and server do not share a GIL) on a loopback port,
and asyncio httpx clients. ``GET /healthz`` (no database) is measured in the
same run as the baseline the other figures are divided by. Prints a Markdown
table. Bounded by request count and time; loopback only.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EPOCHS = 200
LAYERS = 16
SPEC = {"method": "grow", "model": {"family": "vgg", "layers": [8] * LAYERS}, "data": {"name": "digits"},
        "train": {"epochs": 190}, "growth": {"every": 10, "finetune_epochs": 10, "max_width": 512}}


def create_database(admin_url: str) -> str:
    from sqlalchemy import create_engine, make_url, text

    from worker.store.migrate import upgrade

    name = f"netgrow_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


def drop_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, make_url, text

    from worker.store.session import dispose_engines

    dispose_engines()
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


def seed(url: str) -> tuple[str, str]:
    """A key and a job with EPOCHS × LAYERS of history; returns (key, job id)."""
    from growth.events import EpochEnd, UnitStat
    from worker.store import jobs as jobs_store
    from worker.store.session import session_scope
    from worker.store.keys import create_key

    with session_scope(url) as session:
        key = create_key(session, "bench")
        job, _ = jobs_store.create_job(session, owner="bench", spec=SPEC, max_attempts=3)
        claim = jobs_store.claim_job(session, job.id, lease_owner="bench/1", worker="bench", lease_seconds=86_400)
        assert claim is not None
    for epoch in range(EPOCHS):
        units = [UnitStat(f"conv{i + 1}", width=8 + epoch // 10, selected=8, ratio=8 / (8 + epoch // 10),
                          grew=1 if epoch % 10 == 9 else 0) for i in range(LAYERS)]
        event = EpochEnd(epoch=epoch, phase="grow", train_loss=1.0, val_accuracy=0.5, lr=0.1, params=10_000,
                         macs=100_000, seconds=1.0, units=units)
        with session_scope(url) as session:
            assert jobs_store.record_epoch(session, job.id, lease_owner="bench/1", lease_seconds=86_400, epoch=event)
    return key, str(job.id)


def start_server(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    # A broker URL puts the server in distributed mode: it serves, and runs no jobs itself.
    env = {**os.environ, "NETGROW_DATABASE_URL": url, "NETGROW_BROKER_URL": "redis://127.0.0.1:6379/0",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--no-migrate",
                                    "--log-level", "warning"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not become ready")


@dataclass
class Result:
    name: str
    latencies: list[float]  # seconds
    wall: float
    errors: int

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(base_url: str, path: str, key: str, *, requests: int, concurrency: int, seconds: float) -> Result:
    """``concurrency`` clients issue up to ``requests`` GETs of ``path`` in total, within ``seconds``."""
    latencies: list[float] = []
    errors = 0
    remaining = requests
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=30) as client:
        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                start = time.perf_counter()
                response = await client.get(path)
                await response.aread()
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        for _ in range(2 * concurrency):  # warm up connections and caches
            await client.get(path)
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return Result(path, latencies, wall, errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=os.environ.get(
        "NETGROW_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per endpoint")
    parser.add_argument("--port", type=int, default=0, help="default: a free loopback port")
    args = parser.parse_args()

    from app.cli.server import free_port

    port = args.port or free_port()
    url = create_database(args.admin_url)
    server = None
    try:
        key, job_id = seed(url)
        server = start_server(url, port, Path(os.environ.get("TMPDIR", "/tmp")) / f"netgrow-bench-{port}.log")
        base = f"http://127.0.0.1:{port}"
        history = httpx.get(f"{base}/v1/jobs/{job_id}/history", headers={"Authorization": f"Bearer {key}"}).json()
        assert len(history["epochs"]) == EPOCHS and all(len(e["units"]) == LAYERS for e in history["epochs"])
        results = [asyncio.run(load(base, path, key, requests=args.requests, concurrency=args.concurrency,
                                    seconds=args.seconds))
                   for path in ("/healthz", f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/history")]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        drop_database(args.admin_url, url)

    baseline = results[0].percentile(0.5)
    labels = ["GET /healthz (baseline)", "GET /v1/jobs/{id}", f"GET /v1/jobs/{{id}}/history ({EPOCHS}×{LAYERS})"]
    print(f"\n{args.concurrency} concurrent clients, PostgreSQL, one uvicorn process, loopback; "
          f"{os.cpu_count()} CPUs shared by client and server\n")
    print("| endpoint | requests | errors | p50 ms | p99 ms | mean ms | req/s | p50 / baseline p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, result in zip(labels, results):
        print(f"| {label} | {len(result.latencies)} | {result.errors} | {1000 * result.percentile(0.5):.1f} | "
              f"{1000 * result.percentile(0.99):.1f} | {1000 * statistics.fmean(result.latencies):.1f} | "
              f"{len(result.latencies) / result.wall:.0f} | {result.percentile(0.5) / baseline:.1f}× |")
    return 1 if any(result.errors for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
