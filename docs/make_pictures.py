"""Draw the pictures README.md and BENCHMARKS.md show, from the committed results of real runs.

    python docs/make_pictures.py

- ``docs/pictures/digits-vgg-grow-timeline.png``: the width timeline of the grown VGG
  (``bench/results/digits-vgg-grow.result.json``, seed 0 of ``bench/compare.py --dataset digits``);
- ``docs/pictures/digits-vgg-grow-heatmap.png`` and ``-curves.png``: the same run's
  selection heatmap and training curves;
- ``docs/pictures/digits-comparison.png``: parameters against test accuracy, mean ± sd over
  seeds 0, 1, 2 of every method (``bench/results/digits-seeds.summary.json``).

The same code draws them as ``netgrow plot`` and the API do (``app.plots``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from app import plots  # noqa: E402

RESULTS = REPO / "bench" / "results"
PICTURES = REPO / "docs" / "pictures"
DPI = 110


def seed_points(summary: dict[str, dict[str, dict[str, float]]]) -> list[plots.RunPoint]:
    """``{method label: {seed: {params, macs, test_accuracy}}}`` → one point per run."""
    return [plots.RunPoint(label, int(run["params"]), int(run["macs"]), float(run["test_accuracy"]))
            for label, seeds in summary.items() for run in seeds.values()]


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    print(f"wrote {path.relative_to(REPO)} ({len(data) // 1024} KiB)")


def main() -> None:
    PICTURES.mkdir(parents=True, exist_ok=True)
    grown = plots.read_result(json.loads((RESULTS / "digits-vgg-grow.result.json").read_text()))
    for name in plots.JOB_PLOTS:
        with plots.RENDER_LOCK:
            write(PICTURES / f"digits-vgg-grow-{name}.png", plots.render(plots.job_plot(name, grown), "png", dpi=DPI))
    summary = json.loads((RESULTS / "digits-seeds.summary.json").read_text())
    with plots.RENDER_LOCK:
        figure = plots.comparison(seed_points(summary), "params",
                                  title="Digits (16×16): test accuracy against parameters, seeds 0–2")
        write(PICTURES / "digits-comparison.png", plots.render(figure, "png", dpi=DPI))


if __name__ == "__main__":
    main()
