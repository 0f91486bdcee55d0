"""The dashboard's job page, loaded in headless Chromium against a real server (used by bench_plots.py).

A SQLite database gets a key and a running job whose history is the given rows,
written through the job store's own write path (``record_epoch``, one
transaction per epoch, as a worker writes them). ``netgrow serve`` serves it in
a process of its own; Selenium drives Debian's Chromium. Each load starts from
``about:blank`` in the same tab (the key already in session storage), and the
page's own ``performance`` mark ``netgrow:job-ready`` says when it became
interactive: the job shown, its event stream open and its three plots drawn.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1400,1000")


@dataclass
class PageLoads:
    browser: str
    cold_ms: list[float]  # navigation → "netgrow:job-ready", the job one epoch further each time (plots drawn anew)
    warm_ms: list[float]  # the same with nothing new: the server hands out the pictures it drew last time
    static_ms: list[float]  # navigation → DOMContentLoaded of the same loads (the static page)
    cold_server_cpu_ms: list[float]  # the server process's CPU time during each load
    warm_server_cpu_ms: list[float]


def process_cpu_ms(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return 1000 * (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SeededJob:
    """A key and a running job in a SQLite database, recorded epoch by epoch as a worker records them."""

    def __init__(self, url: str, units: int, epochs: int) -> None:
        from worker.store import jobs
        from worker.store.keys import create_key
        from worker.store.session import session_scope

        spec = {"method": "grow", "model": {"family": "vgg", "layers": [8] * units}, "data": {"name": "digits"},
                "train": {"epochs": epochs // 2}, "growth": {"every": 10, "finetune_epochs": epochs - epochs // 2,
                                                             "max_width": 512}}
        self.url = url
        with session_scope(url) as session:
            self.key = create_key(session, "bench")
            job, _ = jobs.create_job(session, owner="bench", spec=spec, max_attempts=3)
            assert jobs.claim_job(session, job.id, lease_owner="bench/1", worker="bench", lease_seconds=86_400)
        self.job_id = job.id
        self.recorded = 0

    def record(self, row: dict[str, Any]) -> None:
        from growth.events import EpochEnd, UnitStat
        from worker.store import jobs
        from worker.store.session import session_scope

        event = EpochEnd(epoch=row["epoch"], phase=row["phase"], train_loss=row["train_loss"],
                         val_accuracy=row["val_accuracy"], lr=row["lr"], params=row["params"], macs=row["macs"],
                         seconds=row["seconds"], units=[UnitStat(**unit) for unit in row["units"]])
        with session_scope(self.url) as session:
            assert jobs.record_epoch(session, self.job_id, lease_owner="bench/1", lease_seconds=86_400, epoch=event)
        self.recorded += 1


def start_server(url: str, port: int, folder: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NETGROW_DATABASE_URL": url, "NETGROW_ARTIFACT_DIR": str(folder / "artifacts"),
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("NETGROW_BROKER_URL", None)
    log = folder / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port),
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


def open_chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("the job page bench needs Debian's chromium and chromium-driver (or run with --no-page)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def measure_job_page(folder: Path, rows: list[dict[str, Any]], *, loads: int) -> PageLoads:
    """``rows[:-loads]`` are recorded first; each cold load records one more row before it."""
    from selenium.webdriver.support.ui import WebDriverWait

    from app.cli.server import free_port
    from worker.store.migrate import upgrade

    url = f"sqlite:///{folder / 'netgrow.db'}"
    upgrade(url)
    job = SeededJob(url, units=len(rows[0]["units"]), epochs=len(rows))
    for row in rows[:-loads]:
        job.record(row)
    port = free_port()
    server = start_server(url, port, folder)
    driver = open_chromium()
    try:
        base = f"http://127.0.0.1:{port}"
        driver.get(f"{base}/ui/")
        driver.execute_script("sessionStorage.setItem('netgrow.apiKey', arguments[0])", job.key)

        def load() -> tuple[float, float, float]:
            cpu = process_cpu_ms(server.pid)
            driver.get("about:blank")
            driver.get(f"{base}/ui/#/jobs/{job.job_id}")
            WebDriverWait(driver, 120, poll_frequency=0.02).until(
                lambda d: d.execute_script("return document.getElementById('view').dataset.ready === 'true'"))
            ready, loaded, epochs = driver.execute_script(
                "const mark = performance.getEntriesByName('netgrow:job-ready')[0];"
                "const nav = performance.getEntriesByType('navigation')[0];"
                "return [mark.startTime, nav.domContentLoadedEventEnd,"
                " document.getElementById('plot-timeline').dataset.epochs];")
            assert int(epochs) == job.recorded, (epochs, job.recorded)  # the page shows every recorded epoch
            return float(ready), float(loaded), process_cpu_ms(server.pid) - cpu

        load()  # the browser's and the server's first request of everything (imports, caches)
        cold, warm, static, cold_cpu, warm_cpu = [], [], [], [], []
        for row in rows[-loads:]:
            job.record(row)
            ready, loaded, cpu = load()
            cold.append(ready)
            cold_cpu.append(cpu)
            static.append(loaded)
            ready, loaded, cpu = load()
            warm.append(ready)
            warm_cpu.append(cpu)
            static.append(loaded)
        return PageLoads(f"Chromium {driver.capabilities.get('browserVersion', '?')}", cold, warm, static,
                         cold_cpu, warm_cpu)
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
