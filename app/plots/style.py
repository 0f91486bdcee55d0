"""What every netgrow picture shares: palette, phase shading, figure creation and rendering.

Figures are built with matplotlib's object API (``Figure`` + the Agg canvas),
never ``pyplot``: pyplot keeps global figure state that a server rendering
for several requests at once must not share. Matplotlib is not thread-safe
either, so ``render`` draws one figure at a time (``RENDER_LOCK``); a plot
takes tens of milliseconds (bench/bench_plots.py), far less than the epochs it
shows.
"""
from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: only file output

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

Format = Literal["svg", "png"]
FORMATS: tuple[Format, ...] = ("svg", "png")
MEDIA_TYPES: dict[str, str] = {"svg": "image/svg+xml", "png": "image/png"}

# Okabe & Ito (2008): eight colours told apart with every common colour-vision deficiency; their
# yellow, faint on white, comes last.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# A perceptually uniform map designed for colour-vision deficiencies (Nuñez et al., 2018).
RATIO_COLORMAP = "cividis"

PHASE_COLORS = {
    "grow": "#DCEBF7",
    "finetune": "#FBEBD3",
    "dense": "#E8E8E8",
    "prune": "#F3DDEB",
    "sensitivity": "#F3DDEB",
    "train": "#FFFFFF",
}
PHASE_LABELS = {"grow": "growing", "finetune": "fine-tuning", "dense": "dense training",
                "prune": "pruning", "sensitivity": "sensitivity scan", "train": "training"}

RC = {
    "font.size": 9,
    "axes.titlesize": 11,
    # A fixed title height: matplotlib otherwise measures every tick label to place each title.
    "axes.titley": 1.0,
    "axes.titlepad": 5.0,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#D0D0D0",
    "grid.linewidth": 0.5,
    "svg.fonttype": "none",  # text stays text: smaller SVGs that browsers render and search
    "svg.hashsalt": "netgrow",  # stable element ids: the same data gives the same bytes
}
RENDER_LOCK = threading.RLock()


def series_styles() -> Iterator[dict[str, str]]:
    """Colour and line style per series: eight colours, then the same colours dashed, and so on."""
    for style, color in itertools.product(LINE_STYLES, OKABE_ITO):
        yield {"color": color, "linestyle": style}


@dataclass(frozen=True)
class Margins:
    """Space around the axes grid, in inches (the figure's size does not change it)."""

    left: float = 0.75
    right: float = 0.25
    top: float = 0.4
    bottom: float = 0.55


def new_figure(width: float, height: float, margins: Margins = Margins(), *, wspace: float = 0.2,
               hspace: float = 0.2) -> Figure:
    """A figure whose axes fill it but for ``margins``.

    Fixed margins, not matplotlib's constrained layout: that layout measures every text
    of the figure in an extra drawing pass, a third of the time a plot takes. The
    plots size their margins from their own labels (``text_width``) instead.
    """
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=margins.left / width, right=1 - margins.right / width,
                           top=1 - margins.top / height, bottom=margins.bottom / height,
                           wspace=wspace, hspace=hspace)
    return figure


def text_width(labels: Iterable[str], size: float = 8.0) -> float:
    """An estimate of the widest label's width in inches (DejaVu Sans averages about 0.55 em a character)."""
    return max((len(label) for label in labels), default=0) * 0.56 * size / 72


def legend_width(labels: Iterable[str], columns: int = 1, size: float = 8.0) -> float:
    """Inches a legend of these labels takes: per column a handle, padding and the widest label."""
    labels = list(labels)
    per_column = [labels[i::columns] for i in range(columns)]
    return sum(0.4 + text_width(column, size) for column in per_column if column)


def styled(function):  # type: ignore[no-untyped-def]
    """Run a figure builder with netgrow's rc settings (fonts, grid), under the render lock."""
    def build(*args, **kwargs):  # type: ignore[no-untyped-def]
        with RENDER_LOCK, matplotlib.rc_context(RC):
            return function(*args, **kwargs)

    build.__name__ = function.__name__
    build.__qualname__ = function.__qualname__
    build.__doc__ = function.__doc__
    build.__wrapped__ = function  # type: ignore[attr-defined]
    return build


def render(figure: Figure, fmt: Format = "svg", *, dpi: int = 100) -> bytes:
    """The figure as SVG or PNG bytes; the same figure always gives the same bytes (no dates, fixed ids)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    buffer = io.BytesIO()
    with RENDER_LOCK, matplotlib.rc_context(RC):
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata, facecolor="white")
    return buffer.getvalue()


def phase_runs(phases: Sequence[str], epochs: Sequence[int]) -> list[tuple[str, int, int]]:
    """Contiguous runs of one phase as ``(phase, first epoch, end)``; ``end`` is the boundary after the last."""
    runs: list[tuple[str, int, int]] = []
    for phase, epoch in zip(phases, epochs):
        if runs and runs[-1][0] == phase and runs[-1][2] == epoch:
            runs[-1] = (phase, runs[-1][1], epoch + 1)
        else:
            runs.append((phase, int(epoch), int(epoch) + 1))
    return runs


def shade_phases(axes: Axes, phases: Sequence[str], epochs: Sequence[int]) -> list[Patch]:
    """Shade each phase's epochs behind the data; returns legend handles for the phases shown.

    A run with a single phase is not shaded (there is nothing to tell apart).
    """
    if len(set(phases)) < 2:
        return []
    handles: dict[str, Patch] = {}
    for phase, start, end in phase_runs(phases, epochs):
        color = PHASE_COLORS.get(phase, "#EEEEEE")
        axes.axvspan(start, end, facecolor=color, edgecolor="none", zorder=0, gid=f"phase-{phase}-{start}")
        handles.setdefault(phase, Patch(facecolor=color, edgecolor="#B0B0B0", linewidth=0.5,
                                        label=PHASE_LABELS.get(phase, phase)))
    return list(handles.values())


def empty_note(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", color="#606060")
    axes.set_xticks([])
    axes.set_yticks([])
