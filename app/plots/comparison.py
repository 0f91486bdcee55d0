"""Comparison chart: parameters (or MACs) against test accuracy, one colour and marker per method.

The picture behind Tables 4–5 of the DessiLBI paper: up and to the left is
better. Runs are grouped by their label (by default their method); a group
of several runs (seeds) is drawn as its runs, faint, and its mean with ± one
sample standard deviation in both directions.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

from app.plots.errors import PlotInputError
from app.plots.style import MARKERS, OKABE_ITO, Margins, empty_note, legend_width, new_figure, styled

Measure = Literal["params", "macs"]
MEASURES: tuple[Measure, ...] = ("params", "macs")
MEASURE_LABELS = {"params": "parameters (log scale)", "macs": "multiply-accumulates per image (log scale)"}


@dataclass(frozen=True)
class RunPoint:
    """One finished run as the chart needs it."""

    group: str  # the legend entry: the method, or a label such as "grow (VGG)"
    params: int
    macs: int
    test_accuracy: float  # a fraction in [0, 1]


@dataclass(frozen=True)
class GroupSummary:
    group: str
    runs: tuple[RunPoint, ...]
    measure: Measure

    def values(self, key: str) -> list[float]:
        scale = 100.0 if key == "test_accuracy" else 1.0
        return [getattr(run, key) * scale for run in self.runs]

    @property
    def x(self) -> tuple[float, float]:
        """(mean, sample standard deviation) of the measure; sd 0 for a single run."""
        return _mean_sd(self.values(self.measure))

    @property
    def y(self) -> tuple[float, float]:
        """(mean, sample standard deviation) of the test accuracy in percent."""
        return _mean_sd(self.values("test_accuracy"))


def points_from_results(results: Sequence[Mapping[str, Any]], groups: Sequence[str] | None = None,
                        where: str = "results") -> list[RunPoint]:
    """Read finished runs' result JSONs (method, final.params, final.macs, final.test_accuracy).

    ``groups`` names each run's legend entry; by default ``seed_groups`` puts runs whose
    specs differ only in their seed together.
    """
    if isinstance(results, (str, bytes, Mapping)) or not isinstance(results, Sequence) or not results:
        raise PlotInputError(where, "give a list of one or more result objects")
    if groups is not None and len(groups) != len(results):
        raise PlotInputError("groups", f"give one group name per result: {len(results)} results, "
                                       f"{len(groups)} names")
    points = []
    for i, result in enumerate(results):
        path = f"{where}[{i}]"
        if not isinstance(result, Mapping) or not isinstance(result.get("final"), Mapping):
            raise PlotInputError(f"{path}.final", "is missing: a comparison needs finished runs' result JSON")
        method = result.get("method")
        if not isinstance(method, str) or not method:
            raise PlotInputError(f"{path}.method", f"must be a method name such as 'grow', got {method!r}")
        final = result["final"]
        params, macs = (_count(final.get(key), f"{path}.final.{key}") for key in ("params", "macs"))
        accuracy = final.get("test_accuracy")
        if (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy)
                or not 0.0 <= accuracy <= 1.0):
            raise PlotInputError(f"{path}.final.test_accuracy", f"must be a fraction in [0, 1], got {accuracy!r}")
        points.append(RunPoint(method, params, macs, float(accuracy)))
    names = list(groups) if groups is not None else seed_groups(results)
    return [RunPoint(name, point.params, point.macs, point.test_accuracy) for name, point in zip(names, points)]


def seed_groups(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """One name per run: runs whose specs are equal but for the seed share it (they are seeds of one setup).

    The name is the method, then the model family where two setups share a method ("grow (vgg)",
    "grow (resnet)"), then a number where that is not enough ("grow (vgg) #2").
    """
    keys = []
    for result in results:
        spec = result.get("spec")
        spec = {key: value for key, value in spec.items() if key != "seed"} if isinstance(spec, Mapping) else {}
        keys.append(json.dumps([result.get("method"), spec], sort_keys=True, default=str))
    setups = list(dict.fromkeys(keys))
    first = {key: results[keys.index(key)] for key in setups}

    def family(result: Mapping[str, Any]) -> str | None:
        model = (result.get("spec") or {}).get("model") if isinstance(result.get("spec"), Mapping) else None
        return model.get("family") if isinstance(model, Mapping) else None

    names: dict[str, str] = {}
    for key in setups:
        method = str(first[key].get("method"))
        same_method = [other for other in setups if first[other].get("method") == method]
        name = method
        if len(same_method) > 1 and family(first[key]):
            name = f"{method} ({family(first[key])})"
        names[key] = name
    ambiguous = {name for name in names.values() if list(names.values()).count(name) > 1}
    counts: dict[str, int] = {}
    for key in setups:  # still ambiguous (two VGG growth setups): number them
        if names[key] in ambiguous:
            counts[names[key]] = counts.get(names[key], 0) + 1
            names[key] = f"{names[key]} #{counts[names[key]]}"
    return [names[key] for key in keys]


def summarize(points: Sequence[RunPoint], measure: Measure) -> list[GroupSummary]:
    """Runs grouped by ``group``, groups in order of first appearance."""
    if measure not in MEASURES:
        raise PlotInputError("measure", f"must be one of {', '.join(MEASURES)}, got {measure!r}")
    order: dict[str, list[RunPoint]] = {}
    for point in points:
        order.setdefault(point.group, []).append(point)
    return [GroupSummary(group, tuple(runs), measure) for group, runs in order.items()]


@styled
def comparison(points: Sequence[RunPoint], measure: Measure = "params", *, title: str | None = None) -> Figure:
    groups = summarize(points, measure)
    width, height = 9.0, 4.8
    labels = [legend_label(group) for group in groups]
    side = legend_width(labels) if labels else 0.0
    figure = new_figure(width, height, Margins(right=0.3 + side))
    axes = figure.add_subplot()
    axes.set_title(title or f"Test accuracy against {'parameters' if measure == 'params' else 'MACs'}",
                   loc="left")
    axes.set_xlabel(MEASURE_LABELS[measure])
    axes.set_ylabel("test accuracy (%)")
    if not groups:
        empty_note(axes, "no finished run to compare")
        return figure
    placed: list[tuple[float, float]] = []
    for index, group in enumerate(groups):
        color, marker = OKABE_ITO[index % len(OKABE_ITO)], MARKERS[index % len(MARKERS)]
        (x, x_sd), (y, y_sd) = group.x, group.y
        if len(group.runs) > 1:
            axes.scatter(group.values(measure), group.values("test_accuracy"), color=color, marker=marker,
                         alpha=0.35, s=22, linewidths=0, zorder=2, gid=f"runs-{index}")
        label = labels[index]
        axes.errorbar([x], [y], xerr=[x_sd] if len(group.runs) > 1 else None,
                      yerr=[y_sd] if len(group.runs) > 1 else None, color=color, marker=marker, markersize=8,
                      markeredgecolor="white", capsize=3, linestyle="none", zorder=3, label=label,
                      gid=f"mean-{index}")
        # Runs of the same size (methods that keep the architecture) would print their names on top of
        # each other: each further name near an earlier point goes one line lower.
        crowd = sum(abs(math.log10(x / px)) < 0.05 and abs(y - py) < 0.6 for px, py in placed)
        placed.append((x, y))
        axes.annotate(group.group, (x, y), xytext=(7, 4 - 11 * crowd), textcoords="offset points", fontsize=8,
                      color="#303030", va="bottom" if crowd == 0 else "center")
    if any(len(group.runs) > 1 for group in groups):
        axes.text(0.01, 0.01, "several runs of a setup: faint points, and their mean with ± 1 sd bars",
                  transform=axes.transAxes, fontsize=7.5, color="#505050", gid="note")
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(EngFormatter(sep=" "))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.margins(x=0.15, y=0.2)
    figure.legend(loc="upper left", bbox_to_anchor=(1 - (side + 0.15) / width, 1 - 0.4 / height), frameon=False,
                  borderaxespad=0)
    return figure


def legend_label(group: GroupSummary) -> str:
    return f"{group.group} ({len(group.runs)} runs)" if len(group.runs) > 1 else group.group


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _count(value: Any, where: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PlotInputError(where, f"must be a positive integer, got {value!r}")
    return value
