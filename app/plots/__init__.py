"""Pictures of runs, drawn from what a run recorded (never from a live model or optimizer).

Four pictures, one module each:

- ``timeline``: every unit's width against the epoch, growth events marked, phases shaded;
- ``heatmap``: units × epochs coloured by the ratio of selected filters, τ marked;
- ``curves``: train loss, validation accuracy, parameters and MACs per epoch;
- ``comparison``: parameters (or MACs) against test accuracy for several runs, mean ± sd per method.

The job plots take a ``RunHistory``, read from a result JSON (``read_result``)
or from a job's stored spec, history rows and events (``read_history``);
``render`` turns any figure into SVG or PNG bytes. The same figures serve the
CLI (``netgrow plot``), the API (``/v1/jobs/{id}/plots/…``) and the dashboard.
This module lives outside ``growth/`` so that the library stays torch and
numpy only.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from matplotlib.figure import Figure

from app.plots.comparison import (
    MEASURES,
    Measure,
    RunPoint,
    comparison,
    points_from_results,
    seed_groups,
    summarize,
)
from app.plots.curves import curves
from app.plots.errors import PlotInputError
from app.plots.heatmap import heatmap
from app.plots.history import ArchitectureChange, RunHistory, read_history, read_result
from app.plots.style import FORMATS, MEDIA_TYPES, RENDER_LOCK, Format, render
from app.plots.timeline import step_points, timeline

__all__ = [
    "FORMATS", "JOB_PLOTS", "MEASURES", "MEDIA_TYPES", "ArchitectureChange", "Format", "JobPlot", "Measure",
    "PlotInputError", "RunHistory", "RunPoint", "comparison", "curves", "heatmap", "job_plot",
    "points_from_results", "read_history", "read_result", "render", "render_comparison", "render_job_plot",
    "seed_groups", "step_points", "summarize", "timeline",
]

JobPlot = Literal["timeline", "heatmap", "curves"]
JOB_PLOTS: dict[str, Callable[[RunHistory], Figure]] = {"timeline": timeline, "heatmap": heatmap, "curves": curves}


def job_plot(name: str, history: RunHistory) -> Figure:
    """The figure ``name`` (timeline, heatmap or curves) of one run."""
    try:
        draw = JOB_PLOTS[name]
    except KeyError:
        raise PlotInputError("plot", f"unknown plot {name!r}; choose one of {', '.join(JOB_PLOTS)}") from None
    return draw(history)


def render_job_plot(name: str, history: RunHistory, fmt: Format = "svg") -> bytes:
    with RENDER_LOCK:  # one figure at a time from build to bytes (matplotlib is not thread-safe)
        return render(job_plot(name, history), fmt)


def render_comparison(points: list[RunPoint], measure: Measure = "params", fmt: Format = "svg") -> bytes:
    with RENDER_LOCK:
        return render(comparison(points, measure), fmt)
