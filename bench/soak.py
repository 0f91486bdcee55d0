"""Soak: mixed HTTP load against the real stack while Celery workers are killed at random.

    python bench/soak.py [--minutes 30] [--max-jobs 600] [--kill-every 180] [--workers 2] [--clients 4]

Starts everything it uses and tears it down: a scratch PostgreSQL database
(created on ``--admin-url`` and dropped), a throwaway ``redis-server`` on a free
loopback port (no persistence), the API (``netgrow serve`` in its own process)
and ``--workers`` Celery workers (``--pool=solo``, one thread each). For
``--minutes``, ``--clients`` threads submit small jobs (at most ``--max-jobs``,
at most ``--in-flight`` unfinished at a time), poll them, list them, read their
history, follow their SSE streams, cancel some and retry the cancelled and
failed ones, while a chaos thread SIGKILLs a random worker every
``--kill-every`` seconds (±50 %) and starts a new one in its place. Then the
load stops, no more kills, and every job gets ``--drain`` seconds to finish.

Reported (Markdown, and JSON with ``--json``):
- jobs lost (goal 0): accepted jobs that are gone, not finished after the
  drain, failed (every spec sent is valid, so a failure is the service's), or succeeded without
  downloadable weights or with epochs missing from their history;
- epochs duplicated (goal 0): an epoch listed twice in a job's history, or seen
  twice in one SSE stream;
- p50/p99 latency per route (SSE: until the response headers);
- resident memory of the API and of the longest-lived worker, early vs. late
  (goal: flat).

Bounded in count (``--max-jobs``) and time (``--minutes`` + ``--drain``);
loopback only. It loads the machine's CPUs: on a shared machine the latency
figures include other people's work (say so when you record them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.api_load import create_database, drop_database  # noqa: E402

TERMINAL = ("succeeded", "failed", "canceled")
SSE_EPOCH = re.compile(r'"epoch":\s*(-?\d+)')


def job_spec(rng: random.Random, epochs: int) -> dict[str, Any]:
    """A small synthetic job: a second or two per epoch on one thread, so kills land mid-training."""
    method = rng.choice(["grow", "grow", "dense"])
    spec: dict[str, Any] = {
        "method": method, "seed": rng.randrange(1000),
        "model": {"family": "vgg", "layers": [4, "M", 4], "classifier": []},
        "data": {"name": "synthetic", "num_classes": 3, "channels": 1, "size": 16, "samples": 1500},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 0.05},
        "optimizer": {"nu": 1.0, "lam": 0.05},
    }
    if method == "grow":
        spec["growth"] = {"every": 2, "threshold": 0.5, "add": 2, "max_width": 12, "finetune_epochs": 0}
    return spec


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    from app.cli.server import free_port as pick

    return pick()


@dataclass
class Stack:
    """The processes under test and how to start more workers."""

    workdir: Path
    env: dict[str, str]
    api: subprocess.Popen[bytes] | None = None
    redis: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_at: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"worker-{name}.log", "wb")  # noqa: SIM115 (kept open by the child)
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.runners.celery_app", "worker", "--pool=solo", "--concurrency=1",
             f"--hostname={name}@soak", "--loglevel=INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with self.lock:
            self.workers[name] = process
            self.started_at[process.pid] = time.monotonic()
        return process

    def stop(self) -> None:
        for process in [*self.workers.values(), self.api, self.redis]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.workers.values(), self.api, self.redis]:
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


@dataclass
class Observations:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    transport_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    jobs: dict[str, str] = field(default_factory=dict)  # id -> last status seen
    sse_duplicates: list[tuple[str, int]] = field(default_factory=list)
    kills: list[tuple[float, str, str]] = field(default_factory=list)  # (t, worker, job status at the time)
    memory: dict[int, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, seconds: float, status: int | None) -> None:
        with self.lock:
            if status is None:
                self.transport_errors[route] += 1
            else:
                self.latencies[route].append(seconds)
                self.statuses[route][status] += 1


class Load:
    def __init__(self, base: str, key: str, args: argparse.Namespace, seen: Observations, rng_seed: int) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self.args = args
        self.seen = seen
        self.rng = random.Random(rng_seed)

    def call(self, route: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError:
            self.seen.record(route, time.perf_counter() - start, None)
            return None
        self.seen.record(route, time.perf_counter() - start, response.status_code)
        return response

    def some_job(self, *statuses: str) -> str | None:
        with self.seen.lock:
            ids = [job for job, state in self.seen.jobs.items() if not statuses or state in statuses]
        return self.rng.choice(ids) if ids else None

    def note(self, response: httpx.Response | None) -> None:
        if response is not None and response.status_code in (200, 201):
            body = response.json()
            with self.seen.lock:
                self.seen.jobs[body["id"]] = body["status"]

    def step(self, submitted: list[int]) -> None:
        choice = self.rng.random()
        if choice < 0.12:
            with self.seen.lock:
                unfinished = sum(state not in TERMINAL for state in self.seen.jobs.values())
                allowed = submitted[0] < self.args.max_jobs and unfinished < self.args.in_flight
                if allowed:
                    submitted[0] += 1
            if allowed:
                spec = job_spec(self.rng, self.rng.choice([4, 6, 8]))
                self.note(self.call("POST /v1/jobs", "POST", "/v1/jobs", json=spec,
                                    headers={"Idempotency-Key": uuid.uuid4().hex}))
                return
        if choice < 0.45:
            job = self.some_job()
            if job:
                self.note(self.call("GET /v1/jobs/{id}", "GET", f"/v1/jobs/{job}"))
        elif choice < 0.55:
            self.call("GET /v1/jobs", "GET", "/v1/jobs", params={"limit": 20})
        elif choice < 0.70:
            job = self.some_job()
            if job:
                self.call("GET /v1/jobs/{id}/history", "GET", f"/v1/jobs/{job}/history")
        elif choice < 0.80:
            job = self.some_job("running", "queued")
            if job:
                self.follow(job)
        elif choice < 0.84:
            job = self.some_job("running", "queued")
            if job:
                self.note(self.call("POST /v1/jobs/{id}/cancel", "POST", f"/v1/jobs/{job}/cancel"))
        elif choice < 0.88:
            job = self.some_job("canceled", "failed")
            if job:
                self.note(self.call("POST /v1/jobs/{id}/retry", "POST", f"/v1/jobs/{job}/retry"))
        elif choice < 0.92:
            job = self.some_job("succeeded")
            if job:
                self.call("GET /v1/jobs/{id}/artifacts/weights", "GET", f"/v1/jobs/{job}/artifacts/weights")
        else:
            self.call("GET /healthz", "GET", "/healthz")

    def follow(self, job: str) -> None:
        """Read a job's SSE stream for up to ``--sse-seconds``; an epoch seen twice in it is a duplicate."""
        route = "GET /v1/jobs/{id}/events"
        start = time.perf_counter()
        epochs: set[int] = set()
        try:
            with self.client.stream("GET", f"/v1/jobs/{job}/events",
                                    timeout=httpx.Timeout(30, read=self.args.sse_seconds + 20)) as response:
                self.seen.record(route, time.perf_counter() - start, response.status_code)
                if response.status_code != 200:
                    return
                event = None
                until = time.monotonic() + self.args.sse_seconds
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "epoch":
                        match = SSE_EPOCH.search(line)
                        if match:
                            epoch = int(match.group(1))
                            if epoch in epochs:
                                with self.seen.lock:
                                    self.seen.sse_duplicates.append((job, epoch))
                            epochs.add(epoch)
                    if time.monotonic() > until:
                        break
        except httpx.TransportError:
            self.seen.record(route, time.perf_counter() - start, None)


def chaos(stack: Stack, args: argparse.Namespace, seen: Observations, stop: threading.Event, began: float,
          rng: random.Random) -> None:
    counter = 0
    while not stop.wait(args.kill_every * rng.uniform(0.5, 1.5)):
        with stack.lock:
            name = rng.choice(sorted(stack.workers))
            process = stack.workers.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()
        with seen.lock:
            seen.kills.append((time.monotonic() - began, name, ""))
        counter += 1
        stack.start_worker(f"w{counter}-{rng.randrange(10**6)}")


def sample_memory(stack: Stack, seen: Observations, stop: threading.Event, began: float, every: float) -> None:
    while not stop.wait(every):
        with stack.lock:
            pids = [p.pid for p in stack.workers.values()] + ([stack.api.pid] if stack.api else [])
        for pid in pids:
            rss = rss_bytes(pid)
            if rss is not None:
                with seen.lock:
                    seen.memory[pid].append((time.monotonic() - began, rss))


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def audit(base: str, key: str, seen: Observations) -> dict[str, Any]:
    """What the database says after the drain, read through the API like a client would."""
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    lost: list[tuple[str, str]] = []
    duplicated: list[tuple[str, int]] = []
    final: dict[str, int] = defaultdict(int)
    resumed = 0
    for job_id in list(seen.jobs):
        response = client.get(f"/v1/jobs/{job_id}")
        if response.status_code != 200:
            lost.append((job_id, f"GET answered {response.status_code}"))
            continue
        job = response.json()
        final[job["status"]] += 1
        resumed += job.get("attempts", 1) > 1
        if job["status"] not in TERMINAL:
            lost.append((job_id, f"still {job['status']} after the drain"))
            continue
        if job["status"] == "failed":  # every spec the soak sends is valid: a failure is the service's
            lost.append((job_id, job.get("error") or "failed without an error"))
        epochs = [row["epoch"] for row in client.get(f"/v1/jobs/{job_id}/history").json()["epochs"]]
        duplicated += [(job_id, epoch) for epoch in set(epochs) if epochs.count(epoch) > 1]
        if job["status"] == "succeeded":
            expected = job["progress"]["total"]
            if sorted(set(epochs)) != list(range(expected)):
                lost.append((job_id, f"history has epochs {sorted(set(epochs))}, expected 0..{expected - 1}"))
            weights = client.get(f"/v1/jobs/{job_id}/artifacts/weights")
            if weights.status_code != 200 or not weights.content:
                lost.append((job_id, f"weights answered {weights.status_code}"))
    client.close()
    return {"lost": lost, "duplicated": duplicated, "final": dict(final), "resumed": resumed}


def memory_summary(seen: Observations, stack_api_pid: int, warmup: float) -> dict[str, Any]:
    def growth(samples: list[tuple[float, int]]) -> dict[str, float] | None:
        settled = [s for s in samples if s[0] >= samples[0][0] + warmup] if samples else []
        if len(settled) < 2:
            return None
        first, last = settled[0], settled[-1]
        return {"from_s": first[0], "to_s": last[0], "early_mib": first[1] / 2**20, "late_mib": last[1] / 2**20,
                "max_mib": max(s[1] for s in settled) / 2**20}

    api = growth(seen.memory.get(stack_api_pid, []))
    workers = {pid: samples for pid, samples in seen.memory.items() if pid != stack_api_pid}
    longest = max(workers.values(), key=lambda s: s[-1][0] - s[0][0], default=[])
    return {"api": api, "longest_lived_worker": growth(longest)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=os.environ.get(
        "NETGROW_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=600.0, help="seconds for the last jobs to finish")
    parser.add_argument("--max-jobs", type=int, default=600, help="submissions at most")
    parser.add_argument("--in-flight", type=int, default=6, help="unfinished jobs at most (keeps the queue short)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=180.0, help="mean seconds between worker kills")
    parser.add_argument("--lease", type=float, default=10.0, help="NETGROW_LEASE_SECONDS for the workers")
    parser.add_argument("--sse-seconds", type=float, default=10.0)
    parser.add_argument("--memory-every", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) afterwards")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="netgrow-soak-"))
    redis_port, api_port = free_port(), free_port()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    url = create_database(args.admin_url)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NETGROW_DATABASE_URL": url,
           "NETGROW_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0", "NETGROW_ARTIFACT_DIR": str(workdir / "artifacts"),
           "NETGROW_DATA_DIR": str(workdir / "datasets"), "NETGROW_LEASE_SECONDS": str(args.lease),
           "NETGROW_MAX_ATTEMPTS": "5"}
    for variable in [k for k in env if k.startswith("NETGROW_") and k not in {
            "NETGROW_DATABASE_URL", "NETGROW_BROKER_URL", "NETGROW_ARTIFACT_DIR", "NETGROW_DATA_DIR",
            "NETGROW_LEASE_SECONDS", "NETGROW_MAX_ATTEMPTS"}]:
        del env[variable]
    stack = Stack(workdir, env)
    seen = Observations()
    stop = threading.Event()
    report: dict[str, Any] = {}
    try:
        stack.redis = subprocess.Popen([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        api_log = workdir / "api.log"
        with open(api_log, "wb") as log:
            stack.api = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(api_port),
                                          "--no-migrate", "--log-level", "warning"], cwd=REPO, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{api_port}"
        wait_ready(base, stack.api, api_log)
        key = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "soak"], cwd=REPO, env=env,
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        for i in range(args.workers):
            stack.start_worker(f"w0-{i}")
        began = time.monotonic()
        threads = [threading.Thread(target=chaos, args=(stack, args, seen, stop, began, rng), daemon=True),
                   threading.Thread(target=sample_memory, args=(stack, seen, stop, began, args.memory_every),
                                    daemon=True)]
        submitted = [0]
        deadline = began + 60 * args.minutes

        def client_loop(number: int) -> None:
            load = Load(base, key, args, seen, args.seed * 100 + number)
            while time.monotonic() < deadline:
                load.step(submitted)
                time.sleep(load.rng.uniform(0.02, 0.2))

        threads += [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads[2:]:
            thread.join()
        stop.set()  # no more kills; memory sampling ends with the load
        load_seconds = time.monotonic() - began

        # Drain: every job finishes (or is given up on after --drain seconds).
        watcher = Load(base, key, args, Observations(), 0)
        drain_until = time.monotonic() + args.drain
        while time.monotonic() < drain_until:
            for job_id in list(seen.jobs):
                if seen.jobs[job_id] not in TERMINAL:
                    response = watcher.call("drain", "GET", f"/v1/jobs/{job_id}")
                    if response is not None and response.status_code == 200:
                        seen.jobs[job_id] = response.json()["status"]
            if all(state in TERMINAL for state in seen.jobs.values()):
                break
            time.sleep(2)
        drained = time.monotonic() - began - load_seconds
        checked = audit(base, key, seen)
        memory = memory_summary(seen, stack.api.pid, warmup=120.0)
        routes = {route: {"requests": len(values), "p50_ms": 1000 * percentile(values, 0.5),
                          "p99_ms": 1000 * percentile(values, 0.99),
                          "statuses": dict(seen.statuses[route]), "transport_errors": seen.transport_errors[route]}
                  for route, values in sorted(seen.latencies.items())}
        report = {"command": " ".join(sys.argv), "load_seconds": load_seconds, "drain_seconds": drained,
                  "cpus": os.cpu_count(), "submitted": submitted[0], "kills": len(seen.kills),
                  "jobs_lost": len(checked["lost"]), "lost": checked["lost"][:20],
                  "epochs_duplicated": len(checked["duplicated"]) + len(seen.sse_duplicates),
                  "history_duplicates": checked["duplicated"][:20], "sse_duplicates": seen.sse_duplicates[:20],
                  "final": checked["final"], "resumed_jobs": checked["resumed"], "routes": routes,
                  "memory": memory, "workdir": str(workdir)}
    finally:
        stop.set()
        stack.stop()
        drop_database(args.admin_url, url)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nsoak: {report['load_seconds'] / 60:.1f} min of load + {report['drain_seconds']:.0f} s drain, "
          f"{args.workers} workers, {args.clients} clients, {report['kills']} worker kills, "
          f"{report['submitted']} jobs submitted ({report['resumed_jobs']} resumed after a kill), "
          f"{report['cpus']} CPUs shared\n")
    print(f"- jobs lost: {report['jobs_lost']} (goal 0)  {report['lost'][:3]}")
    print(f"- epochs duplicated: {report['epochs_duplicated']} (goal 0)")
    print(f"- final states: {report['final']}\n")
    print("| route | requests | statuses | transport errors | p50 ms | p99 ms |")
    print("|---|---:|---|---:|---:|---:|")
    for route, figures in report["routes"].items():
        print(f"| {route} | {figures['requests']} | {figures['statuses']} | {figures['transport_errors']} | "
              f"{figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} |")
    for name, figures in report["memory"].items():
        if figures:
            print(f"\n- RSS {name}: {figures['early_mib']:.0f} MiB at {figures['from_s']:.0f} s → "
                  f"{figures['late_mib']:.0f} MiB at {figures['to_s']:.0f} s (max {figures['max_mib']:.0f} MiB)",
                  end="")
    print()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 1 if report["jobs_lost"] or report["epochs_duplicated"] else 0


if __name__ == "__main__":
    sys.exit(main())
