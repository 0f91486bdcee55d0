"""The pictures draw the recorded data: checked on the drawn artists (matplotlib's Line2D, images,
collections), not only that a file appears.

A hand-written history: two units over six epochs, four growing and two fine-tuning;
conv1 widens 8 → 16 at the end of epoch 1, conv2 8 → 12 at the end of epoch 3.
"""
from __future__ import annotations

import json
import math
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from app import plots

REPO = Path(__file__).resolve().parents[2]
RESULTS = sorted((REPO / "bench" / "results").glob("*.result.json"))

WIDTHS = {"conv1": [8, 8, 16, 16, 16, 16], "conv2": [8, 8, 8, 8, 12, 12]}
GREW = {"conv1": [0, 8, 0, 0, 0, 0], "conv2": [0, 0, 0, 4, 0, 0]}
SELECTED = {"conv1": [2, 7, 9, 10, 11, 11], "conv2": [0, 4, 6, 7, 7, 8]}
PHASES = ["grow", "grow", "grow", "grow", "finetune", "finetune"]
LOSS = [2.0, 1.2, 0.8, None, 0.4, 0.35]  # a null loss (diverged epoch stored as null) leaves a gap
ACCURACY = [0.5, 0.7, 0.8, 0.85, 0.9, 0.91]
PARAMS = [100, 100, 180, 180, 220, 220]
EVENTS = [{"epoch": 1, "change": "widen", "units": {"conv1": [8, 16]}},
          {"epoch": 3, "change": "widen", "units": {"conv2": [8, 12]}}]


def history_rows(**extra: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for epoch in range(6):
        rows.append({
            "epoch": epoch, "phase": PHASES[epoch], "train_loss": LOSS[epoch], "val_accuracy": ACCURACY[epoch],
            "lr": 0.1, "params": PARAMS[epoch], "macs": 10 * PARAMS[epoch], "seconds": 0.1,
            "units": [{"name": name, "width": WIDTHS[name][epoch], "selected": SELECTED[name][epoch],
                       "ratio": SELECTED[name][epoch] / WIDTHS[name][epoch], "grew": GREW[name][epoch]}
                      for name in WIDTHS],
            **{key: values[epoch] for key, values in extra.items()},
        })
    return rows


def result(**changes: Any) -> dict[str, Any]:
    return {"method": "grow", "spec": {"model": {"family": "vgg"}, "data": {"name": "digits"},
                                       "growth": {"threshold": 0.8}},
            "history": history_rows(), "events": EVENTS,
            "final": {"widths": {"conv1": 16, "conv2": 12}, "params": 220, "macs": 2200, "test_accuracy": 0.9},
            "epochs": 6, "wall_seconds": 1.0} | changes


def gid_lines(figure: Figure, prefix: str) -> dict[str, Line2D]:
    return {line.get_gid(): line for axes in figure.axes for line in axes.get_lines()
            if (line.get_gid() or "").startswith(prefix)}


def gid_collections(figure: Figure, gid: str) -> list[Any]:
    return [c for axes in figure.axes for c in axes.collections if c.get_gid() == gid]


# --------------------------------------------------------------------------- timeline


def test_timeline_steps_through_every_recorded_width_and_ends_at_the_final_width() -> None:
    figure = plots.timeline(plots.read_result(result()))
    lines = gid_lines(figure, "width-")
    assert set(lines) == {"width-conv1", "width-conv2"}
    for name, widths in WIDTHS.items():
        line = lines[f"width-{name}"]
        assert line.get_drawstyle() == "steps-post"
        assert list(line.get_xdata()) == [0, 1, 2, 3, 4, 5, 6]  # epoch e spans [e, e + 1)
        assert list(line.get_ydata()) == widths + [widths[-1]]
        assert line.get_label() == name


def test_timeline_marks_each_change_where_it_takes_effect() -> None:
    figure = plots.timeline(plots.read_result(result()))
    (axes,) = [a for a in figure.axes if a.get_lines()]
    dividers = sorted(line.get_xdata()[0] for line in axes.get_lines() if (line.get_gid() or "").startswith("change-"))
    assert dividers == [2, 4]  # the end of epoch 1 and of epoch 3
    widened = {tuple(offset) for gid in ("widen-2", "widen-4") for c in gid_collections(figure, gid)
               for offset in c.get_offsets()}
    assert widened == {(2.0, 16.0), (4.0, 12.0)}  # at the new width of the unit that grew


def test_timeline_without_events_reads_the_changes_off_the_history() -> None:
    recorded = plots.read_result(result())
    derived = plots.read_result(result(events=None))
    assert derived.changes == recorded.changes
    no_events = {key: value for key, value in result().items() if key != "events"}
    assert plots.read_result(no_events).changes == recorded.changes


def test_timeline_shades_the_growing_and_fine_tuning_epochs() -> None:
    figure = plots.timeline(plots.read_result(result()))
    axes = figure.axes[0]
    spans = {patch.get_gid(): patch.get_x() for patch in axes.patches}
    extents = {gid: (patch.get_x(), patch.get_x() + patch.get_width())
               for gid, patch in ((p.get_gid(), p) for p in axes.patches)}
    assert set(spans) == {"phase-grow-0", "phase-finetune-4"}
    assert extents == {"phase-grow-0": (0, 4), "phase-finetune-4": (4, 6)}
    legend_texts = {text.get_text() for legend in figure.legends for text in legend.get_texts()}
    assert {"conv1", "conv2", "growing", "fine-tuning", "widened"} <= legend_texts


def test_timeline_of_a_unit_added_later_starts_where_it_appears() -> None:
    rows = history_rows()
    for row in rows[2:]:
        row["units"].append({"name": "stage1.block2", "width": 4, "selected": 4, "ratio": 1.0, "grew": 0})
    history = plots.read_history("autogrow", rows)
    line = gid_lines(plots.timeline(history), "width-stage1.block2")["width-stage1.block2"]
    assert np.isnan(line.get_ydata()[:2]).all() and list(line.get_ydata()[2:]) == [4, 4, 4, 4, 4]
    added = [c for c in history.changes if c.change == "add_block"]
    assert [(c.boundary, c.units) for c in added] == [(2, {"stage1.block2": (0, 4)})]


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_timeline_of_every_committed_result_ends_at_its_final_widths(path: Path) -> None:
    data = json.loads(path.read_text())
    lines = gid_lines(plots.timeline(plots.read_result(data)), "width-")
    final = {gid.removeprefix("width-"): line.get_ydata()[-1] for gid, line in lines.items()}
    assert final == data["final"]["widths"]
    first = data["history"][0]
    assert {u["name"]: lines[f"width-{u['name']}"].get_ydata()[0] for u in first["units"]} == \
        {u["name"]: u["width"] for u in first["units"]}


# --------------------------------------------------------------------------- heatmap


def test_heatmap_colours_each_cell_by_selected_over_width_and_marks_tau() -> None:
    figure = plots.heatmap(plots.read_result(result()))
    axes = figure.axes[0]
    (image,) = axes.get_images()
    expected = np.array([[s / w for s, w in zip(SELECTED[name], WIDTHS[name])] for name in WIDTHS])
    np.testing.assert_allclose(np.asarray(image.get_array()), expected)
    assert image.get_clim() == (0.0, 1.0)
    assert [label.get_text() for label in axes.get_yticklabels()] == ["conv1", "conv2"]
    colorbar_axes = figure.axes[1]
    (threshold,) = [line for line in colorbar_axes.get_lines() if line.get_gid() == "threshold"]
    assert list(threshold.get_ydata()) == [0.8, 0.8]
    (hot,) = gid_collections(figure, "at-threshold")
    cells = {(int(x), int(y)) for x, y in hot.get_offsets()}
    assert cells == {(epoch, row) for row, name in enumerate(WIDTHS) for epoch in range(6)
                     if SELECTED[name][epoch] / WIDTHS[name][epoch] >= 0.8}


def test_heatmap_leaves_cells_blank_where_a_unit_did_not_exist_and_shows_no_tau_for_other_methods() -> None:
    rows = history_rows()
    for row in rows[3:]:
        row["units"].append({"name": "late", "width": 2, "selected": 1, "ratio": 0.5, "grew": 0})
    figure = plots.heatmap(plots.read_history("autogrow", rows))
    array = figure.axes[0].get_images()[0].get_array()
    assert list(np.ma.getmaskarray(array)[2]) == [True, True, True, False, False, False]
    assert not any(line.get_gid() == "threshold" for axes in figure.axes for line in axes.get_lines())


# --------------------------------------------------------------------------- curves


def test_curves_draw_loss_accuracy_params_and_macs_per_epoch() -> None:
    lines = gid_lines(plots.curves(plots.read_result(result())), "")
    np.testing.assert_array_equal(lines["train_loss"].get_ydata(), [2.0, 1.2, 0.8, np.nan, 0.4, 0.35])
    np.testing.assert_allclose(lines["val_accuracy"].get_ydata(), [100 * a for a in ACCURACY])
    assert list(lines["params"].get_ydata()) == PARAMS
    assert list(lines["macs"].get_ydata()) == [10 * p for p in PARAMS]
    assert all(list(line.get_xdata()) == list(range(6)) for line in lines.values())
    assert "support_val_accuracy" not in lines  # not recorded: not drawn


def test_curves_draw_the_support_val_accuracy_where_the_run_records_it() -> None:
    support = [0.4, 0.6, 0.75, 0.8, 0.88, 0.9]
    lines = gid_lines(plots.curves(plots.read_result(result(history=history_rows(support_val_accuracy=support)))), "")
    np.testing.assert_allclose(lines["support_val_accuracy"].get_ydata(), [100 * a for a in support])


# --------------------------------------------------------------------------- comparison


def test_comparison_draws_each_method_at_its_mean_with_sample_sd_bars() -> None:
    points = [plots.RunPoint("grow", 100, 1000, 0.90), plots.RunPoint("grow", 200, 2000, 0.95),
              plots.RunPoint("grow", 300, 3000, 1.00), plots.RunPoint("l1_prune", 500, 9000, 0.93)]
    figure = plots.comparison(points)
    axes = figure.axes[0]
    grow, prune = axes.containers
    assert (grow.lines[0].get_xdata()[0], grow.lines[0].get_ydata()[0]) == (200, pytest.approx(95.0))
    # The bars span mean ± sample sd: sd(100, 200, 300) = 100; sd(90, 95, 100) = 5.
    segments = sorted(tuple(map(tuple, segment)) for collection in grow.lines[2] for segment in collection.get_segments())
    assert segments == sorted([((100.0, pytest.approx(95.0)), (300.0, pytest.approx(95.0))),
                               ((200.0, pytest.approx(90.0)), (200.0, pytest.approx(100.0)))])
    assert (prune.lines[0].get_xdata()[0], prune.lines[0].get_ydata()[0]) == (500, pytest.approx(93.0))
    assert not prune.has_xerr and not prune.has_yerr  # one run: no spread to show
    (runs,) = gid_collections(figure, "runs-0")
    assert [tuple(p) for p in runs.get_offsets()] == [(100, 90), (200, 95), (300, 100)]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["grow (3 runs)", "l1_prune"]
    assert axes.get_xscale() == "log"


def test_comparison_by_macs_and_from_result_files() -> None:
    results = [json.loads(path.read_text()) for path in RESULTS[:3]]
    points = plots.points_from_results(results)
    figure = plots.comparison(points, "macs")
    xs = [container.lines[0].get_xdata()[0] for container in figure.axes[0].containers]
    assert xs == [r["final"]["macs"] for r in results]
    assert figure.axes[0].get_xlabel().startswith("multiply-accumulates")


# --------------------------------------------------------------------------- rendering


def test_svg_is_well_formed_deterministic_and_keeps_its_text() -> None:
    history = plots.read_result(result())
    first = plots.render_job_plot("timeline", history, "svg")
    assert first == plots.render_job_plot("timeline", history, "svg")  # the same data gives the same bytes
    root = ElementTree.fromstring(first)
    ids = {element.get("id") for element in root.iter()}
    assert {"width-conv1", "width-conv2", "widen-2", "widen-4"} <= ids
    texts = "".join(root.itertext())
    assert "conv1" in texts and "epoch" in texts and "width (output channels)" in texts


def test_png_has_the_figure_size() -> None:
    png = plots.render_job_plot("curves", plots.read_result(result()), "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (900, 580)  # 9 × 5.8 inches at 100 dpi


def test_an_empty_history_draws_a_placeholder() -> None:
    history = plots.read_history("grow", [], spec={})
    for name in plots.JOB_PLOTS:
        svg = plots.render_job_plot(name, history, "svg")
        assert b"no epoch recorded yet" in svg


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"method": "grow", "seed": 0, "model": {}}, "result.history", "not a netgrow result"),
    ([1, 2], "result", "result object"),
    (result(history=[{"epoch": 0, "phase": "grow"}]), "result.history[0].units", "missing"),
    (result(history=history_rows()[:2] + history_rows()[:1]), "result.history[2].epoch", "must increase"),
    (result(events=[{"epoch": 1, "change": "widen", "units": {"conv1": 16}}]), "result.events[0].units.conv1",
     "[old width, new width]"),
])
def test_input_that_is_not_a_result_is_refused_naming_the_field(data: Any, field: str, words: str) -> None:
    with pytest.raises(plots.PlotInputError) as raised:
        plots.read_result(data)
    assert raised.value.field == field and words in raised.value.message


def test_a_bad_unit_row_is_refused_naming_it() -> None:
    rows = history_rows()
    rows[3]["units"][1]["width"] = -1
    with pytest.raises(plots.PlotInputError, match=r"result\.history\[3\]\.units\[1\]\.width"):
        plots.read_result(result(history=rows))


def test_unknown_plot_and_bad_comparison_input_are_refused() -> None:
    with pytest.raises(plots.PlotInputError, match="unknown plot 'pie'; choose one of timeline, heatmap, curves"):
        plots.job_plot("pie", plots.read_result(result()))
    with pytest.raises(plots.PlotInputError, match=r"results\[0\]\.final"):
        plots.points_from_results([{"method": "grow"}])
    with pytest.raises(plots.PlotInputError, match=r"results\[0\]\.final\.test_accuracy"):
        plots.points_from_results([result(final={"params": 1, "macs": 1, "test_accuracy": 93.8})])
    with pytest.raises(plots.PlotInputError, match="measure"):
        plots.comparison([plots.RunPoint("grow", 1, 1, 0.5)], "flops")  # type: ignore[arg-type]
    assert math.isfinite(plots.summarize([plots.RunPoint("grow", 1, 1, 0.5)], "params")[0].x[1])


def test_runs_that_differ_only_in_their_seed_form_one_group() -> None:
    def run(method: str, family: str, seed: int, lr: float = 0.1) -> dict[str, Any]:
        return result(method=method, spec={"method": method, "seed": seed, "model": {"family": family},
                                           "train": {"lr": lr}})
    runs = [run("grow", "vgg", 0), run("grow", "vgg", 1), run("grow", "resnet", 0), run("dense", "vgg", 0),
            run("grow", "vgg", 0, lr=0.01)]
    assert plots.seed_groups(runs) == ["grow (vgg) #1", "grow (vgg) #1", "grow (resnet)", "dense", "grow (vgg) #2"]
    assert plots.seed_groups(runs[:2] + runs[3:4]) == ["grow", "grow", "dense"]
