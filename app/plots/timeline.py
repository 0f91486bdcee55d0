"""Width timeline: every unit's width against the epoch, growth events marked, phases shaded.

Epoch e spans [e, e + 1) on the x axis; a unit's line is a step function
(``steps-post``) through ``(e, width during e)`` for each recorded epoch, and one
last point at the boundary after the last epoch with the width the run ended
with (``width + grew``). A change made at the end of epoch e therefore shows
at x = e + 1, where it takes effect; a dotted line and a marker per changed
unit (▲ widened, ▼ pruned, ■ block added) mark it.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from app.plots.history import RunHistory
from app.plots.style import (
    PHASE_LABELS,
    Margins,
    empty_note,
    legend_width,
    new_figure,
    series_styles,
    shade_phases,
    styled,
)

BASE_LINE_WIDTH = 1.6
MAX_END_LABELS = 8
CHANGE_MARKERS = {"widen": ("^", "widened"), "prune": ("v", "pruned"), "add_block": ("s", "block added")}


def step_points(history: RunHistory, row: int) -> tuple[np.ndarray, np.ndarray]:
    """The x and y of unit ``row``'s step line: each epoch's width, then the width after the last epoch."""
    x = np.append(history.epochs, history.epochs[-1] + 1).astype(float)
    y = np.append(history.width[row], history.width_after[row, -1])
    return x, y


@styled
def timeline(history: RunHistory) -> Figure:
    """Width per unit against epoch (see the module docstring for how epochs map to x)."""
    width, height = 9.0, 4.6
    columns = 2 if len(history.units) > 14 else 1
    side = max(legend_width(history.units, columns), legend_width([*PHASE_LABELS.values(), "block added"]))
    figure = new_figure(width, height, Margins(right=0.25 + side))
    axes = figure.add_subplot()
    axes.set_title(f"Width of each unit — {history.describe()}", loc="left")
    axes.set_xlabel("epoch")
    axes.set_ylabel("width (output channels)")
    if len(history.epochs) == 0:
        empty_note(axes, "no epoch recorded yet")
        return figure
    phase_handles = shade_phases(axes, history.phases, history.epochs)
    colors = {}
    unit_handles = []
    line_widths = _line_widths(history)
    for row, (unit, style) in enumerate(zip(history.units, series_styles())):
        x, y = step_points(history, row)
        (line,) = axes.plot(x, y, drawstyle="steps-post", linewidth=line_widths[row], label=unit,
                            gid=f"width-{unit}", zorder=3, solid_capstyle="butt", **style)
        colors[unit] = style["color"]
        unit_handles.append(line)
    event_handles = _mark_changes(axes, history, colors)
    _label_line_ends(axes, history)
    axes.set_xlim(history.epochs[0], history.epochs[-1] + 1)
    axes.set_ylim(bottom=0, top=max(1.0, float(np.nanmax(history.width_after, initial=0.0))) * 1.12)
    axes.yaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    axes.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    # The legends stand in the figure's right margin, which was sized for them.
    x = 1 - (side + 0.1) / width
    figure.legend(handles=unit_handles, title="unit", loc="upper left", bbox_to_anchor=(x, 1 - 0.3 / height),
                  frameon=False, ncols=columns, borderaxespad=0)
    if phase_handles or event_handles:
        figure.legend(handles=phase_handles + event_handles, loc="lower left", frameon=False, borderaxespad=0,
                      bbox_to_anchor=(x, 0.5 / height))
    return figure


def _line_widths(history: RunHistory) -> list[float]:
    """Units whose widths are identical all run long are drawn as concentric stripes, thickest first.

    Growth widens several units alike (all of a VGG's layers start at the same
    width), and their lines would hide each other; nesting them keeps every
    colour visible while the drawn values stay the exact widths.
    """
    groups: dict[bytes, list[int]] = {}
    for row in range(len(history.units)):
        _, y = step_points(history, row)
        groups.setdefault(np.nan_to_num(y, nan=-1.0).tobytes(), []).append(row)
    widths = [BASE_LINE_WIDTH] * len(history.units)
    for rows in groups.values():
        step = min(1.6, 5.0 / max(len(rows) - 1, 1))
        for position, row in enumerate(rows):
            widths[row] = BASE_LINE_WIDTH + step * (len(rows) - 1 - position)
    return widths


def _label_line_ends(axes, history: RunHistory) -> None:  # type: ignore[no-untyped-def]
    """Name the units at each final width, at the right end of the lines."""
    final = history.width_after[:, -1]
    levels: dict[float, list[str]] = {}
    for unit, width in zip(history.units, final):
        if not np.isnan(width):
            levels.setdefault(float(width), []).append(unit)
    if len(levels) > MAX_END_LABELS:
        return
    for width, names in levels.items():
        text = ", ".join(names if len(names) <= 3 else [*names[:3], f"+{len(names) - 3}"])
        axes.annotate(text, (history.epochs[-1] + 1, width), xytext=(-4, 5), textcoords="offset points",
                      ha="right", va="bottom", fontsize=8, color="#303030", zorder=5, gid=f"end-label-{width:g}")


def _mark_changes(axes, history: RunHistory, colors: dict[str, str]) -> list[Line2D]:  # type: ignore[no-untyped-def]
    kinds_seen: dict[str, Line2D] = {}
    boundaries = set()
    for change in history.changes:
        marker, text = CHANGE_MARKERS.get(change.change, ("o", change.change))
        x = change.boundary
        if x not in boundaries:
            axes.axvline(x, color="#505050", linestyle=":", linewidth=0.9, zorder=2, gid=f"change-{x}")
            boundaries.add(x)
        names = [name for name in change.units if name in colors]
        if names:
            axes.scatter([x] * len(names), [change.units[name][1] for name in names], marker=marker, s=30,
                         c=[colors[name] for name in names], edgecolors="white", linewidths=0.6, zorder=4,
                         gid=f"{change.change}-{x}")
        kinds_seen.setdefault(change.change, Line2D([], [], marker=marker, linestyle="none", color="#404040",
                                                    label=text))
    return list(kinds_seen.values())
