"""Tables 4 and 5 over hand-written result JSONs (docs/architecture.md, "Result JSON")."""
from __future__ import annotations

import copy
import csv
import io
import json
import re
from typing import Any

import pytest

from growth.compare import compare, format_count
from growth.errors import SpecError


def result(method: str, widths: dict[str, int], params: int, macs: int, accuracy: float,
           epochs: int, seconds: float) -> dict[str, Any]:
    return {
        "method": method,
        "spec": {"method": method, "seed": 0},
        "final": {"widths": widths, "params": params, "macs": macs, "test_accuracy": accuracy,
                  "model": {"family": "vgg"}},
        "history": [{"epoch": 0, "phase": "train", "train_loss": 1.0, "val_accuracy": 0.5}],
        "events": [],
        "epochs": epochs,
        "wall_seconds": seconds,
    }


GROW = result("grow", {"conv1": 32, "conv2": 96, "conv3": 126}, 2_960_000, 217_000_000, 0.938, 230, 1234.5)
PRUNE = result("l1_prune", {"conv1": 32, "conv2": 64, "conv3": 128}, 5_400_000, 206_000_000, 0.934, 200, 987.25)
# The dense run has no conv3: its cell is missing.
DENSE = result("dense", {"conv1": 64, "conv2": 64}, 15_000_000, 313_000_000, 0.9325, 160, 3600.0)


def test_table4_holds_widths_then_summary_rows_one_column_per_run() -> None:
    table = compare([GROW, PRUNE, DENSE]).table4
    assert table == {
        "columns": ["grow", "l1_prune", "dense"],
        "rows": [
            {"name": "conv1", "values": [32, 32, 64]},
            {"name": "conv2", "values": [96, 64, 64]},
            {"name": "conv3", "values": [126, 128, None]},
            {"name": "Params", "values": [2_960_000, 5_400_000, 15_000_000]},
            {"name": "MACs", "values": [217_000_000, 206_000_000, 313_000_000]},
            {"name": "Test accuracy", "values": [0.938, 0.934, 0.9325]},
            {"name": "Wall time (s)", "values": [1234.5, 987.25, 3600.0]},
            {"name": "Epochs", "values": [230, 200, 160]},
        ],
    }


def test_table5_has_params_accuracy_and_size_relative_to_the_first_run() -> None:
    assert compare([PRUNE, GROW]).table5 == [
        {"run": "l1_prune", "method": "l1_prune", "params": 5_400_000, "test_accuracy": 0.934,
         "relative_params": 1.0},
        {"run": "grow", "method": "grow", "params": 2_960_000, "test_accuracy": 0.938,
         "relative_params": 2_960_000 / 5_400_000},
    ]


def test_units_are_merged_in_model_order() -> None:
    # A unit only the second run has goes right after its predecessor in that run,
    # not to the end; ResNet-style names keep their order too.
    first = result("grow", {"stem": 8, "stage1": 16, "stage2": 32}, 1, 1, 0.5, 1, 1.0)
    second = result("autogrow", {"stem": 8, "stage1": 16, "stage1.block1": 8, "stage2": 32,
                                 "stage2.block1": 16}, 1, 1, 0.5, 1, 1.0)
    rows = compare([first, second]).table4["rows"]
    names = [row["name"] for row in rows]
    assert names[:5] == ["stem", "stage1", "stage1.block1", "stage2", "stage2.block1"]
    assert rows[2]["values"] == [None, 8]


def test_columns_are_labelled_by_labels_or_numbered_methods() -> None:
    other = copy.deepcopy(GROW)
    other["final"]["params"] = 3_000_000
    assert compare([GROW, PRUNE, other]).labels == ["grow #1", "l1_prune", "grow #2"]
    labelled = compare([GROW, other], labels=["J=10", "J=5"])
    assert labelled.table4["columns"] == ["J=10", "J=5"]
    assert [row["run"] for row in labelled.table5] == ["J=10", "J=5"]
    assert [row["method"] for row in labelled.table5] == ["grow", "grow"]


def test_markdown_formats_numbers_for_people() -> None:
    assert compare([GROW, DENSE]).to_markdown() == (
        "| Layer | grow | dense |\n"
        "|---|---:|---:|\n"
        "| conv1 | 32 | 64 |\n"
        "| conv2 | 96 | 64 |\n"
        "| conv3 | 126 | – |\n"
        "| Params | 2.96 M | 15.00 M |\n"
        "| MACs | 217.00 M | 313.00 M |\n"
        "| Test accuracy | 93.80% | 93.25% |\n"
        "| Wall time (s) | 1234.5 | 3600.0 |\n"
        "| Epochs | 230 | 160 |\n"
        "\n"
        "| Run | Method | Params | Test accuracy | Relative params |\n"
        "|---|---|---:|---:|---:|\n"
        "| grow | grow | 2.96 M | 93.80% | 1.00× |\n"
        "| dense | dense | 15.00 M | 93.25% | 5.07× |\n"
    )


def test_format_count_picks_the_unit_after_rounding() -> None:
    assert [format_count(n) for n in (0, 999, 1000, 45_600, 999_950, 1_234_567, 2_960_000_000)] == [
        "0", "999", "1.0 K", "45.6 K", "1.00 M", "1.23 M", "2.96 G"]


def _parse_markdown_number(cell: str) -> float | None:
    if cell == "–":
        return None
    if cell.endswith("%"):
        return float(cell[:-1]) / 100
    match = re.fullmatch(r"(-?[\d.]+)(?: ([KMG]))?", cell)
    assert match, cell
    return float(match[1]) * {None: 1, "K": 1e3, "M": 1e6, "G": 1e9}[match[2]]


def test_markdown_numbers_read_back_within_their_rounding() -> None:
    odd = result("rmda", {"conv1": 7, "conv2": 13}, 45_649, 1_234_567_890, 0.987654, 3, 12.3456)
    comparison = compare([odd, GROW, DENSE])
    lines = comparison.to_markdown("table4").strip().splitlines()[2:]
    parsed = {line.split(" | ")[0][2:]: [_parse_markdown_number(c.strip(" |")) for c in line.split(" | ")[1:]]
              for line in lines}
    for row in comparison.table4["rows"]:
        for shown, exact in zip(parsed[row["name"]], row["values"]):
            if exact is None:
                assert shown is None
                continue
            # Counts keep 3 significant digits or better; accuracy 2 decimals of a percent.
            tolerance = 5e-5 if row["name"] == "Test accuracy" else max(0.5, abs(exact) * 5e-3)
            assert shown == pytest.approx(exact, abs=tolerance), row["name"]


def test_csv_keeps_exact_numbers() -> None:
    odd = result("rmda", {"conv1": 7, "conv2": 13}, 45_649, 1_234_567_890, 0.1 + 0.2, 3, 12.345678901234567)
    comparison = compare([odd, DENSE])
    rows = list(csv.reader(io.StringIO(comparison.to_csv())))
    assert rows[0] == ["row", "rmda", "dense"]
    by_name = {row[0]: row[1:] for row in rows[1:]}
    assert by_name["Params"] == ["45649", "15000000"]
    assert float(by_name["Test accuracy"][0]) == 0.1 + 0.2  # not 0.3: exact
    assert float(by_name["Wall time (s)"][0]) == 12.345678901234567
    assert int(by_name["MACs"][0]) == 1_234_567_890

    table5 = list(csv.DictReader(io.StringIO(comparison.to_csv("table5"))))
    assert [row["run"] for row in table5] == ["rmda", "dense"]
    assert float(table5[1]["relative_params"]) == 15_000_000 / 45_649
    assert float(table5[0]["test_accuracy"]) == 0.1 + 0.2


def test_csv_leaves_missing_units_empty() -> None:
    rows = list(csv.reader(io.StringIO(compare([GROW, DENSE]).to_csv())))
    assert rows[3] == ["conv3", "126", ""]


def test_json_is_serialisable_and_exact() -> None:
    comparison = compare([GROW, PRUNE, DENSE])
    data = comparison.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data == {"table4": comparison.table4, "table5": comparison.table5}


def test_integral_floats_are_accepted_as_counts() -> None:
    loose = copy.deepcopy(GROW)
    loose["final"]["params"] = 2_960_000.0
    assert compare([loose]).table5[0]["params"] == 2_960_000


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("final"), "results[1].final"),
    (lambda r: r["final"].pop("params"), "results[1].final.params"),
    (lambda r: r["final"].pop("widths"), "results[1].final.widths"),
    (lambda r: r.pop("method"), "results[1].method"),
    (lambda r: r.pop("epochs"), "results[1].epochs"),
    (lambda r: r.pop("wall_seconds"), "results[1].wall_seconds"),
    (lambda r: r["final"].update(macs=-5), "results[1].final.macs"),
    (lambda r: r["final"].update(params="12"), "results[1].final.params"),
    (lambda r: r["final"].update(test_accuracy=93.8), "results[1].final.test_accuracy"),
    (lambda r: r["final"]["widths"].update(conv2=1.5), "results[1].final.widths.conv2"),
    (lambda r: r.update(final=[]), "results[1].final"),
])
def test_bad_results_name_the_field(mutate, field: str) -> None:
    broken = copy.deepcopy(PRUNE)
    mutate(broken)
    with pytest.raises(SpecError) as err:
        compare([GROW, broken])
    assert err.value.field == field


@pytest.mark.parametrize("results, labels, field", [
    ([], None, "results"),
    (GROW, None, "results"),
    ([GROW, 3], None, "results[1]"),
    ([GROW, PRUNE], ["only one"], "labels"),
    ([GROW, PRUNE], ["same", "same"], "labels"),
    ([GROW, PRUNE], ["ok", ""], "labels[1]"),
])
def test_bad_arguments_name_the_field(results: Any, labels: Any, field: str) -> None:
    with pytest.raises(SpecError) as err:
        compare(results, labels)
    assert err.value.field == field


def test_unknown_table_name_is_refused() -> None:
    with pytest.raises(SpecError) as err:
        compare([GROW]).to_csv("table6")  # type: ignore[arg-type]
    assert err.value.field == "table"


def test_group_sparsity_gets_a_row_only_when_a_run_reports_it() -> None:
    rmda = result("rmda", {"conv1": 64, "conv2": 64}, 15_000_000, 313_000_000, 0.93, 160, 10.0)
    rmda["group_sparsity"] = 0.875
    table = compare([GROW, rmda]).table4
    assert table["rows"][-1] == {"name": "Group sparsity", "values": [None, 0.875]}
    assert "| Group sparsity | – | 87.50% |" in compare([GROW, rmda]).to_markdown("table4")
    assert "Group sparsity" not in [row["name"] for row in compare([GROW, PRUNE]).table4["rows"]]
    assert compare([GROW, rmda]).to_csv().splitlines()[-1] == "Group sparsity,,0.875"


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", float("nan")])
def test_a_bad_group_sparsity_is_named(bad: Any) -> None:
    rmda = copy.deepcopy(PRUNE)
    rmda["group_sparsity"] = bad
    with pytest.raises(SpecError) as info:
        compare([GROW, rmda])
    assert info.value.field == "results[1].group_sparsity"
