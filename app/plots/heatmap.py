"""Selection heatmap: units × epochs coloured by the ratio of selected filters (selected / width).

The ratio is eq. (23) of the DessiLBI paper: a unit whose ratio reaches τ at a
growth check is widened. For growth runs τ is marked on the colour bar and
every cell at or above it carries a dot, so the cells that triggered growth
stand out. Cells of units that did not exist yet (AutoGrow's new blocks) are
left blank.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from app.plots.history import RunHistory
from app.plots.style import RATIO_COLORMAP, Margins, empty_note, new_figure, phase_runs, styled, text_width


@styled
def heatmap(history: RunHistory) -> Figure:
    width, height = 8.5, max(3.0, min(9.0, 1.6 + 0.28 * max(len(history.units), 1)))
    left = 0.45 + text_width(history.units)  # the unit names are the y tick labels
    figure = new_figure(width, height, Margins(left=left, right=1.15, bottom=0.8))
    axes = figure.add_subplot()
    axes.set_title(f"Selected filters / width — {history.describe()}", loc="left")
    axes.set_xlabel("epoch")
    axes.set_ylabel("unit")
    axes.grid(False)
    if len(history.epochs) == 0 or not history.units:
        empty_note(axes, "no epoch recorded yet")
        return figure
    ratio = np.ma.masked_invalid(history.ratio)
    first, last = history.epochs[0], history.epochs[-1]
    # One column per epoch: recorded histories have no gaps (a resumed run's is rewound to its checkpoint).
    extent = (first - 0.5, last + 0.5, len(history.units) - 0.5, -0.5)
    colormap = figure.colormaps[RATIO_COLORMAP] if hasattr(figure, "colormaps") else RATIO_COLORMAP
    image = axes.imshow(ratio, cmap=colormap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest",
                        extent=extent, gid="ratio")
    axes.set_yticks(range(len(history.units)), labels=history.units)
    axes.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    box = axes.get_position()
    colorbar_axes = figure.add_axes((box.x1 + 0.15 / width, box.y0, 0.14 / width, box.height))
    colorbar = figure.colorbar(image, cax=colorbar_axes)
    colorbar.set_label("selected / width")
    threshold = history.threshold
    if threshold is not None:
        colorbar.ax.axhline(threshold, color="#D55E00", linewidth=2.0, gid="threshold")
        colorbar.ax.set_yticks(sorted({0.0, 0.2, 0.4, 0.6, 0.8, 1.0, threshold}),
                               labels=[f"τ = {v:g}" if v == threshold else f"{v:g}"
                                       for v in sorted({0.0, 0.2, 0.4, 0.6, 0.8, 1.0, threshold})])
        rows, columns = np.nonzero(np.nan_to_num(history.ratio, nan=-1.0) >= threshold)
        if len(rows):
            axes.scatter(history.epochs[columns], rows, s=4, c="#D55E00", marker="o", linewidths=0,
                         gid="at-threshold", label=f"ratio ≥ τ ({threshold:g})")
            axes.legend(loc="upper right", bbox_to_anchor=(1.0, -0.45 / (box.height * height)), frameon=False,
                        markerscale=3, borderaxespad=0)
    for _, start, end in phase_runs(history.phases, history.epochs)[1:]:
        axes.axvline(start - 0.5, color="white", linewidth=1.2, gid=f"phase-boundary-{start}")
    return figure
