"""Side-by-side comparison of finished runs, shaped like the DessiLBI paper's tables.

``compare(results)`` takes result JSONs (docs/architecture.md, "Result JSON") and
builds

- Table 4: one row per growth unit with its final width (the union of the runs'
  units, in model order), then Params, MACs, Test accuracy, Wall time (s) and
  Epochs, and Group sparsity (the RMDA paper's share of all-zero groups) when
  any run reports it; one column per run;
- Table 5: one row per run with its method, parameter count, test accuracy and
  parameter count relative to the first run.

The tables are plain data (``.table4``, ``.table5``, ``.to_json()``) holding exact
numbers, with ``None`` where a run lacks a unit; ``.to_csv()`` writes the exact
numbers too, and ``.to_markdown()`` formats them for people (1.23 M, 93.80%, "–").
"""
from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from .errors import SpecError

__all__ = ["Comparison", "RunSummary", "compare"]

Number = int | float
TableName = Literal["table4", "table5"]

MISSING = "–"  # a unit the run does not have, in markdown
SUMMARY_ROWS = ("Params", "MACs", "Test accuracy", "Wall time (s)", "Epochs")
SPARSITY_ROW = "Group sparsity"
TABLE5_FIELDS = ("run", "method", "params", "test_accuracy", "relative_params")
TABLE5_HEADERS = ("Run", "Method", "Params", "Test accuracy", "Relative params")


@dataclass(frozen=True)
class RunSummary:
    """The fields of one result that the tables show, validated."""

    label: str
    method: str
    widths: dict[str, int]
    params: int
    macs: int
    test_accuracy: float
    wall_seconds: float
    epochs: int
    group_sparsity: float | None = None  # rmda / prox_sgd: share of all-zero groups

    def summary_values(self) -> tuple[Number, ...]:
        """Values of the ``SUMMARY_ROWS``, in that order."""
        return (self.params, self.macs, self.test_accuracy, self.wall_seconds, self.epochs)


@dataclass(frozen=True)
class Comparison:
    """Tables 4 and 5 over a list of runs; build it with :func:`compare`."""

    runs: tuple[RunSummary, ...]
    units: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        return [run.label for run in self.runs]

    @property
    def table4(self) -> dict[str, Any]:
        """``{"columns": [label, ...], "rows": [{"name": row, "values": [one per run]}]}``.

        Width rows first (``None`` where a run lacks the unit), then the summary rows.
        """
        rows: list[dict[str, Any]] = [
            {"name": unit, "values": [run.widths.get(unit) for run in self.runs]} for unit in self.units
        ]
        summaries = [run.summary_values() for run in self.runs]
        rows += [
            {"name": name, "values": [values[i] for values in summaries]} for i, name in enumerate(SUMMARY_ROWS)
        ]
        # Methods that keep the architecture (RMDA, prox-SGD) show their structure here, not in the widths.
        if any(run.group_sparsity is not None for run in self.runs):
            rows.append({"name": SPARSITY_ROW, "values": [run.group_sparsity for run in self.runs]})
        return {"columns": self.labels, "rows": rows}

    @property
    def table5(self) -> list[dict[str, Any]]:
        """One dict per run: run (label), method, params, test_accuracy, relative_params.

        ``relative_params`` is params / the first run's params (``None`` if that is 0).
        """
        baseline = self.runs[0].params
        return [
            {
                "run": run.label,
                "method": run.method,
                "params": run.params,
                "test_accuracy": run.test_accuracy,
                "relative_params": run.params / baseline if baseline else None,
            }
            for run in self.runs
        ]

    def to_json(self) -> dict[str, Any]:
        """Both tables as a JSON-serialisable dict with exact numbers."""
        return {"table4": self.table4, "table5": self.table5}

    def to_csv(self, table: TableName = "table4") -> str:
        """One table as CSV with exact numbers (shortest round-tripping floats); empty cell = missing."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if table == "table4":
            writer.writerow(["row", *self.labels])
            for row in self.table4["rows"]:
                writer.writerow([row["name"], *("" if v is None else _exact(v) for v in row["values"])])
        elif table == "table5":
            writer.writerow(TABLE5_FIELDS)
            for entry in self.table5:
                writer.writerow(["" if entry[f] is None else _exact(entry[f]) for f in TABLE5_FIELDS])
        else:
            raise SpecError("table", f"must be 'table4' or 'table5', got {table!r}")
        return out.getvalue()

    def to_markdown(self, table: TableName | None = None) -> str:
        """Markdown for people: Table 4 and Table 5 (or just ``table``), blank-line separated."""
        if table not in (None, "table4", "table5"):
            raise SpecError("table", f"must be 'table4', 'table5' or None, got {table!r}")
        parts = []
        if table in (None, "table4"):
            parts.append(self._table4_markdown())
        if table in (None, "table5"):
            parts.append(self._table5_markdown())
        return "\n\n".join(parts) + "\n"

    def _table4_markdown(self) -> str:
        formatters = dict(zip(SUMMARY_ROWS, (format_count, format_count, format_accuracy, format_seconds, str)))
        formatters[SPARSITY_ROW] = format_accuracy
        body = []
        for row in self.table4["rows"]:
            fmt = formatters.get(row["name"], str)
            body.append([row["name"], *(MISSING if v is None else fmt(v) for v in row["values"])])
        return _markdown_table(["Layer", *self.labels], body)

    def _table5_markdown(self) -> str:
        body = [
            [
                entry["run"],
                entry["method"],
                format_count(entry["params"]),
                format_accuracy(entry["test_accuracy"]),
                MISSING if entry["relative_params"] is None else f"{entry['relative_params']:.2f}×",
            ]
            for entry in self.table5
        ]
        return _markdown_table(list(TABLE5_HEADERS), body, text_columns=2)


def compare(results: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None) -> Comparison:
    """Build Tables 4 and 5 over ``results`` (result JSONs), one column / row per run.

    Columns are labelled by ``labels`` or, by default, by each run's method, numbered
    ("grow #1", "grow #2") where a method occurs more than once. Invalid input raises
    ``SpecError`` naming the field, e.g. ``results[1].final.params``.
    """
    if isinstance(results, (str, bytes, Mapping)) or not isinstance(results, Sequence):
        raise SpecError("results", "must be a list of result objects (the JSON growth.run returns)")
    if not results:
        raise SpecError("results", "give at least one result to compare")
    parsed = [_parse_result(result, f"results[{i}]") for i, result in enumerate(results)]
    names = _check_labels(labels, len(parsed)) if labels is not None else _default_labels([r.method for r in parsed])
    runs = tuple(replace(run, label=name) for run, name in zip(parsed, names))
    return Comparison(runs, tuple(_merge_in_order([list(run.widths) for run in runs])))


# --- Validation -----------------------------------------------------------------


def _parse_result(result: Any, path: str) -> RunSummary:
    """Validate one result JSON; the label is the method until ``compare`` sets it."""
    if not isinstance(result, Mapping):
        raise SpecError(path, "must be a result object with method, final, epochs and wall_seconds")
    method = _field(result, "method", path)
    if not isinstance(method, str) or not method:
        raise SpecError(f"{path}.method", f"must be a non-empty string such as 'grow', got {method!r}")
    final = _field(result, "final", path)
    if not isinstance(final, Mapping):
        raise SpecError(f"{path}.final", "must be an object with widths, params, macs and test_accuracy")
    widths = _field(final, "widths", f"{path}.final")
    if not isinstance(widths, Mapping):
        raise SpecError(f"{path}.final.widths", "must map unit names to widths, e.g. {\"conv1\": 24}")
    accuracy = _fraction(_field(final, "test_accuracy", f"{path}.final"), f"{path}.final.test_accuracy")
    sparsity = result.get("group_sparsity")
    return RunSummary(
        label=method,
        method=method,
        widths={str(name): _count(width, f"{path}.final.widths.{name}") for name, width in widths.items()},
        params=_count(_field(final, "params", f"{path}.final"), f"{path}.final.params"),
        macs=_count(_field(final, "macs", f"{path}.final"), f"{path}.final.macs"),
        test_accuracy=accuracy,
        wall_seconds=_number(_field(result, "wall_seconds", path), f"{path}.wall_seconds"),
        epochs=_count(_field(result, "epochs", path), f"{path}.epochs"),
        group_sparsity=None if sparsity is None else _fraction(sparsity, f"{path}.group_sparsity"),
    )


def _field(mapping: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in mapping:
        raise SpecError(f"{path}.{key}", "is missing; compare takes the result JSON that growth.run returns")
    return mapping[key]


def _count(value: Any, path: str) -> int:
    """A non-negative integer; an integral float (12345.0, as some JSON writers emit) is accepted."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(path, f"must be a non-negative integer, got {value!r}")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SpecError(path, f"must be a non-negative number, got {value!r}")
    return value


def _fraction(value: Any, path: str) -> float:
    number = _number(value, path)
    if number > 1.0:
        raise SpecError(path, f"must be a fraction in [0, 1], got {number}")
    return number


def _check_labels(labels: Any, count: int) -> list[str]:
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise SpecError("labels", "must be a list of column names, one per result")
    if len(labels) != count:
        raise SpecError("labels", f"give one label per result: {count} results, {len(labels)} labels")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise SpecError(f"labels[{i}]", f"must be a non-empty string, got {label!r}")
    duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicates:
        raise SpecError("labels", f"labels must be distinct; repeated: {duplicates}")
    return list(labels)


def _default_labels(methods: list[str]) -> list[str]:
    totals = Counter(methods)
    seen: Counter[str] = Counter()
    labels = []
    for method in methods:
        seen[method] += 1
        labels.append(f"{method} #{seen[method]}" if totals[method] > 1 else method)
    return labels


def _merge_in_order(sequences: list[list[str]]) -> list[str]:
    """Union of the names, each run's order kept: a new name goes right after its predecessor in that run."""
    merged: list[str] = []
    for names in sequences:
        position = 0
        for name in names:
            if name in merged:
                position = merged.index(name) + 1
            else:
                merged.insert(position, name)
                position += 1
    return merged


# --- Formatting -------------------------------------------------------------------

_SCALES = ((1e3, "K", 1), (1e6, "M", 2), (1e9, "G", 2))


def format_count(n: int) -> str:
    """1234567 → '1.23 M', 45600 → '45.6 K', 999 → '999'; never '1000.0 K' (999950 → '1.00 M')."""
    if abs(n) < 1000:
        return str(n)
    for scale, suffix, digits in _SCALES:
        value = round(n / scale, digits)
        if abs(value) < 1000 or suffix == _SCALES[-1][1]:
            break
    return f"{value:.{digits}f} {suffix}"


def format_accuracy(fraction: float) -> str:
    """0.938 → '93.80%'."""
    return f"{100 * fraction:.2f}%"


def format_seconds(seconds: float) -> str:
    return f"{seconds:.1f}"


def _exact(value: Number) -> str:
    # repr of a float is the shortest string that parses back to the same float.
    return repr(value) if isinstance(value, float) else str(value)


def _markdown_table(header: list[str], body: list[list[str]], text_columns: int = 1) -> str:
    """A pipe table; the first ``text_columns`` are left-aligned, the numbers right-aligned."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    return "\n".join([line(header), "|" + "|".join(align) + "|", *(line(row) for row in body)])
