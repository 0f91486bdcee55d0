"""How fast the pictures are: every plot of a 200-epoch × 16-unit history, and the dashboard's job page.

    OMP_NUM_THREADS=1 python bench/bench_plots.py [--repeats 9] [--page-loads 7] [--no-page]

1. Rendering: ``timeline``, ``heatmap`` and ``curves`` of a synthetic history of
   200 epochs × 16 units (100 growing epochs, a widening every 10, then 100
   fine-tuning epochs), and the comparison chart of 21 runs (7 methods × 3 seeds),
   each as SVG and PNG: building the figure and writing the bytes, what an API
   request does. Baseline in the same run: a bare one-line figure through the same
   path (matplotlib's fixed cost). Goal: each plot ≤ 300 ms.
2. The job page: the real server (``netgrow serve``, its own process, SQLite) holds a
   running job with the same 200 × 16 history (written through the job store's own
   write path, as a worker writes it); headless Chromium opens ``/ui/#/jobs/<id>``
   with the key already in session storage, and the page's own ``performance`` mark
   says when it became interactive (job shown, event stream open, its three plots
   drawn). Each "new epoch" load follows one more recorded epoch, so the server draws
   all three plots anew; each "nothing new" load repeats it. Baseline in the same
   run: the static page's DOMContentLoaded. Goal: ≤ 1 s.

Prints Markdown tables (median and max milliseconds).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from app import plots  # noqa: E402

EPOCHS = 200
UNITS = 16
GROW_EPOCHS = 100
GOAL_PLOT_MS = 300.0
GOAL_PAGE_MS = 1000.0


def synthetic_history(epochs: int = EPOCHS, units: int = UNITS) -> list[dict[str, Any]]:
    """A growth run's history: widths 8 → up to 8 + 8·10 by every-10-epoch widenings, then fine-tuning."""
    rows = []
    widths = [8] * units
    for epoch in range(epochs):
        phase = "grow" if epoch < GROW_EPOCHS else "finetune"
        grows = phase == "grow" and epoch % 10 == 9
        unit_rows = []
        for i in range(units):
            selected = min(widths[i], int(widths[i] * (0.5 + 0.45 * math.sin(0.1 * epoch + i) ** 2)))
            grew = 8 if grows and (i + epoch // 10) % 3 else 0
            unit_rows.append({"name": f"conv{i + 1}", "width": widths[i], "selected": selected,
                              "ratio": selected / widths[i], "grew": grew})
            widths[i] += grew
        params = sum(w * 9 * 8 for w in widths)
        rows.append({"epoch": epoch, "phase": phase, "train_loss": 2.0 * math.exp(-epoch / 40) + 0.01,
                     "val_accuracy": 0.98 - 0.5 * math.exp(-epoch / 25), "lr": 0.1, "params": params,
                     "macs": params * 64, "seconds": 1.0, "units": unit_rows})
    return rows


def comparison_points() -> list[plots.RunPoint]:
    methods = ("grow (VGG)", "l1_prune", "dense", "autogrow", "grow (ResNet)", "rmda", "prox_sgd")
    return [plots.RunPoint(method, 20_000 * (m + 1) + 1_000 * s, 1_500_000 * (m + 1), 0.97 + 0.005 * s)
            for m, method in enumerate(methods) for s in range(3)]


def time_ms(action: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each call (CPU time counts this process only: on a shared
    machine it is the less disturbed of the two)."""
    action()  # warm: fonts, caches, imports
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        cpu.append(1000 * (time.process_time() - start_cpu))
        wall.append(1000 * (time.perf_counter() - start))
    return wall, cpu


def bare_figure(fmt: str) -> bytes:
    with plots.RENDER_LOCK:
        figure = plots.style.new_figure(8.0, 4.6)
        figure.add_subplot().plot([0, 1], [0, 1])
        return plots.render(figure, fmt)  # type: ignore[arg-type]


Timings = tuple[list[float], list[float]]


def bench_rendering(repeats: int) -> list[tuple[str, str, Timings]]:
    history = plots.read_history("grow", synthetic_history(), spec={"growth": {"threshold": 0.8},
                                                                  "model": {"family": "vgg"},
                                                                  "data": {"name": "digits"}})
    points = comparison_points()
    rows = []
    for fmt in plots.FORMATS:
        rows.append(("bare one-line figure (baseline)", fmt, time_ms(lambda: bare_figure(fmt), repeats)))
        for name in plots.JOB_PLOTS:
            rows.append((name, fmt, time_ms(lambda: plots.render_job_plot(name, history, fmt), repeats)))
        rows.append(("comparison (21 runs)", fmt, time_ms(lambda: plots.render_comparison(points, "params", fmt),
                                                          repeats)))
    return rows


def print_rendering(rows: list[tuple[str, str, Timings]], repeats: int) -> None:
    baseline = {fmt: statistics.median(cpu) for name, fmt, (_, cpu) in rows if name.startswith("bare")}
    print(f"\nRendering, {EPOCHS} epochs × {UNITS} units: figure built and written, as an API request does; "
          f"median of {repeats} (after one warm-up), one process\n")
    print("| plot | format | wall ms (median) | wall ms (max) | CPU ms (median) | CPU × bare figure | "
          "goal ≤ 300 ms (wall) |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name, fmt, (wall, cpu) in rows:
        median = statistics.median(wall)
        goal = "" if name.startswith("bare") else ("met" if max(wall) <= GOAL_PLOT_MS else
                                                   "met (median)" if median <= GOAL_PLOT_MS else "**missed**")
        print(f"| {name} | {fmt.upper()} | {median:.0f} | {max(wall):.0f} | {statistics.median(cpu):.0f} | "
              f"{statistics.median(cpu) / baseline[fmt]:.1f}× | {goal} |")


def bench_page(loads: int) -> None:
    from job_page import measure_job_page  # bench/job_page.py: server, seeded job and browser

    with tempfile.TemporaryDirectory(prefix="netgrow-bench-ui-") as folder:
        result = measure_job_page(Path(folder), synthetic_history(EPOCHS + loads), loads=loads)
    print(f"\nJob page of a running job with {EPOCHS} epochs × {UNITS} units of stored history; {loads} loads of "
          f"each kind in headless {result.browser}, one tab; server: `netgrow serve` (SQLite) in its own process\n")
    print("| load | median ms | max ms | goal ≤ 1000 ms |")
    print("|---|---:|---:|---|")

    def row(label: str, times: list[float], goal: bool = True) -> None:
        median = statistics.median(times)
        verdict = ("met" if max(times) <= GOAL_PAGE_MS else "met (median)" if median <= GOAL_PAGE_MS
                   else "**missed**") if goal else ""
        print(f"| {label} | {median:.0f} | {max(times):.0f} | {verdict} |")

    row("static page only: navigation → DOMContentLoaded (baseline)", result.static_ms, goal=False)
    row("interactive after a new epoch: the job and its three plots drawn anew", result.cold_ms)
    row("interactive, nothing new since the last view (pictures served as drawn)", result.warm_ms)
    print(f"\nServer CPU time per load (its process's user + system time): after a new epoch "
          f"{statistics.median(result.cold_server_cpu_ms):.0f} ms, nothing new "
          f"{statistics.median(result.warm_server_cpu_ms):.0f} ms (medians).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--page-loads", type=int, default=7)
    parser.add_argument("--no-page", action="store_true", help="only the rendering figures (no server, no browser)")
    args = parser.parse_args()
    import matplotlib

    print(f"matplotlib {matplotlib.__version__}, Agg; python {sys.version.split()[0]}; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print_rendering(bench_rendering(args.repeats), args.repeats)
    if not args.no_page:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        bench_page(args.page_loads)


if __name__ == "__main__":
    main()
