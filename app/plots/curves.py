"""Training curves: train loss, validation accuracy, parameters and MACs per epoch, phases shaded.

Each value is drawn at its epoch number (the value measured over, or at the
end of, that epoch). Validation accuracy is in percent; the accuracy of the
network restricted to Γ's support is drawn next to it when the run records
``support_accuracy``. A null value (a diverged loss) leaves a gap.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, NullFormatter

from app.plots.history import SUPPORT_ACCURACY, RunHistory
from app.plots.style import OKABE_ITO, Margins, empty_note, new_figure, shade_phases, styled

FEW_EPOCHS = 20
PANELS = (
    ("train_loss", "train loss", "loss (cross-entropy)"),
    ("val_accuracy", "validation accuracy", "accuracy (%)"),
    ("params", "parameters", "parameters"),
    ("macs", "multiply-accumulates per image", "MACs"),
)


@styled
def curves(history: RunHistory) -> Figure:
    width, height = 9.0, 5.8
    figure = new_figure(width, height, Margins(left=0.8, right=0.2, top=0.75, bottom=0.5), wspace=0.25, hspace=0.3)
    figure.suptitle(f"Training curves — {history.describe()}", x=0.1 / width, y=1 - 0.08 / height, ha="left",
                    va="top", fontsize=11)
    grid = figure.subplots(2, 2, sharex=True)
    if len(history.epochs) == 0:
        for axes in grid.flat:
            empty_note(axes, "no epoch recorded yet")
        return figure
    phase_handles = []
    marker = "o" if len(history.epochs) <= FEW_EPOCHS else None  # a line of one point would not show
    for axes, (key, title, label) in zip(grid.flat, PANELS):
        axes.set_title(title, loc="left", fontsize=9)
        axes.set_ylabel(label)
        phase_handles = shade_phases(axes, history.phases, history.epochs)
        values = history.curves[key] * (100.0 if key == "val_accuracy" else 1.0)
        axes.plot(history.epochs, values, color=OKABE_ITO[0], linewidth=1.4, gid=key, marker=marker, markersize=3,
                  label="validation" if key == "val_accuracy" else None)
        if key == "val_accuracy" and SUPPORT_ACCURACY in history.curves:
            axes.plot(history.epochs, history.curves[SUPPORT_ACCURACY] * 100.0, color=OKABE_ITO[3],
                      linestyle="--", linewidth=1.4, marker=marker, markersize=3, gid=SUPPORT_ACCURACY, label="Γ-support subnetwork")
            axes.legend(loc="lower right", frameon=False)
        if key in ("params", "macs"):
            axes.yaxis.set_major_formatter(EngFormatter(sep=" "))
            axes.set_ylim(bottom=0, top=max(1.0, float(np.nanmax(values, initial=0.0))) * 1.08)
        if key == "train_loss" and np.nanmin(values, initial=np.inf) > 0 and \
                np.nanmax(values, initial=0.0) / np.nanmin(values, initial=np.inf) > 50:
            axes.set_yscale("log")  # losses that fall by orders of magnitude
            # Plain numbers (0.01, 0.1, 1): the default 10^k labels go through the (slow) mathtext parser.
            axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axes.yaxis.set_minor_formatter(NullFormatter())
        pad = 0.5 if marker else 0.0  # room for the first and last markers
        axes.set_xlim(history.epochs[0] - pad, max(history.epochs[-1], history.epochs[0] + 1) + pad)
    for axes in grid[1]:
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    if phase_handles:
        figure.legend(handles=phase_handles, loc="upper right", ncols=len(phase_handles), frameon=False,
                      bbox_to_anchor=(1 - 0.15 / width, 1 - 0.05 / height), borderaxespad=0)
    return figure
