"""The data every job plot draws from, read and checked once: a run's history as arrays.

A plot never touches a live model or optimizer: it reads what a run recorded,
either a result JSON (``netgrow grow --out``, ``growth.run``) or a job's stored
spec, history rows and architecture events (the API, while the job runs).
Both have the same history rows (docs/architecture.md, "Result JSON")::

    {"epoch": 4, "phase": "grow", "train_loss": 0.3, "val_accuracy": 0.9, "params": 3138, "macs": 258128,
     "units": [{"name": "conv1", "width": 8, "selected": 5, "ratio": 0.625, "grew": 0}, ...]}

``width`` is the width the unit had *during* the epoch and ``grew`` what the
run added (negative: removed) at the epoch's end, so the width after epoch e
is ``width + grew``. Bad input raises ``PlotInputError`` naming the field
(``history[3].units[0].width``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.plots.errors import PlotInputError

# History fields drawn as curves; a value may be null (a non-finite loss is stored as null).
CURVE_FIELDS = ("train_loss", "val_accuracy", "params", "macs")
# Accuracy of the network restricted to Γ's support, drawn when a run records it.
SUPPORT_ACCURACY = "support_val_accuracy"  # growth.events.EpochEnd, job_epochs


@dataclass(frozen=True)
class ArchitectureChange:
    """A change made at the end of ``epoch``: it shows from the boundary ``epoch + 1`` on."""

    epoch: int
    change: str  # widen | prune | add_block
    units: dict[str, tuple[int, int]]  # name -> (old width, new width)

    @property
    def boundary(self) -> int:
        return self.epoch + 1


@dataclass(frozen=True)
class RunHistory:
    """A run's per-epoch record as arrays: one column per epoch, one row per unit.

    ``width``, ``selected``, ``ratio`` and ``grew`` are ``(units, epochs)`` float
    arrays with NaN where a unit did not exist (AutoGrow adds blocks, so later
    epochs have more units). ``units`` is in model order (the last epoch's
    order; units gone by then follow in order of appearance).
    """

    method: str
    epochs: np.ndarray
    phases: tuple[str, ...]
    units: tuple[str, ...]
    width: np.ndarray
    selected: np.ndarray
    ratio: np.ndarray
    grew: np.ndarray
    curves: dict[str, np.ndarray]
    changes: tuple[ArchitectureChange, ...]
    spec: Mapping[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float | None:
        """τ, the growth ratio threshold, for DessiLBI growth runs (other methods grow by other rules)."""
        if self.method != "grow":
            return None
        value = (self.spec.get("growth") or {}).get("threshold")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def width_after(self) -> np.ndarray:
        """Each unit's width at the end of each epoch, after that epoch's growth (``width + grew``)."""
        return self.width + np.nan_to_num(self.grew)

    def describe(self) -> str:
        """A short line naming the run: method, model family, dataset, epochs."""
        model = self.spec.get("model") or {}
        data = self.spec.get("data") or {}
        count = len(self.epochs)
        parts = [self.method, model.get("family"), data.get("name"), f"{count} epoch{'' if count == 1 else 's'}"]
        return " · ".join(str(part) for part in parts if part)


def read_result(result: Any, where: str = "result") -> RunHistory:
    """The history of a result JSON (what ``growth.run`` returns and ``netgrow grow --out`` writes)."""
    if not isinstance(result, Mapping):
        raise PlotInputError(where, "must be a result object with method, spec, history and events "
                                    "(the JSON that `netgrow grow --out` writes)")
    for key in ("method", "history"):
        if key not in result:
            raise PlotInputError(f"{where}.{key}", "is missing: this is not a netgrow result JSON "
                                                   "(the file `netgrow grow --out` writes)")
    spec = result.get("spec")
    return read_history(result["method"], result["history"], result.get("events"),
                        spec=spec if isinstance(spec, Mapping) else {}, where=where)


def read_history(
    method: Any,
    history: Any,
    events: Any = None,
    *,
    spec: Mapping[str, Any] | None = None,
    where: str = "result",
) -> RunHistory:
    """Check and convert history rows (and architecture events, if any) into a ``RunHistory``.

    ``events`` are the result's ``events`` (or a job's stored architecture
    events): ``{"epoch", "change", "units": {name: [old, new]}}``. Without them
    the changes are read off the history itself (``grew``, and units that appear).
    """
    if not isinstance(method, str) or not method:
        raise PlotInputError(f"{where}.method", f"must be a method name such as 'grow', got {method!r}")
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise PlotInputError(f"{where}.history", "must be a list of epoch rows")
    rows = [_read_row(row, f"{where}.history[{i}]") for i, row in enumerate(history)]
    for i in range(1, len(rows)):
        if rows[i]["epoch"] <= rows[i - 1]["epoch"]:
            raise PlotInputError(f"{where}.history[{i}].epoch",
                                 f"epochs must increase: {rows[i]['epoch']} follows {rows[i - 1]['epoch']}")
    units = _unit_order([[unit["name"] for unit in row["units"]] for row in rows])
    index = {name: i for i, name in enumerate(units)}
    shape = (len(units), len(rows))
    matrices = {key: np.full(shape, np.nan) for key in ("width", "selected", "ratio", "grew")}
    for column, row in enumerate(rows):
        for unit in row["units"]:
            for key, matrix in matrices.items():
                value = unit[key]
                matrix[index[unit["name"]], column] = np.nan if value is None else value
    curves = {key: np.array([_float(row.get(key)) for row in rows]) for key in CURVE_FIELDS}
    if any(row.get(SUPPORT_ACCURACY) is not None for row in rows):
        curves[SUPPORT_ACCURACY] = np.array([_float(row.get(SUPPORT_ACCURACY)) for row in rows])
    epochs = np.array([row["epoch"] for row in rows], dtype=int)
    changes = (_read_events(events, f"{where}.events") if events is not None
               else _changes_from_history(epochs, units, matrices["width"], matrices["grew"]))
    return RunHistory(method=method, epochs=epochs, phases=tuple(row["phase"] for row in rows),
                      units=tuple(units), curves=curves, changes=changes, spec=spec or {}, **matrices)


def _read_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise PlotInputError(where, "must be an epoch row with epoch, phase and units")
    for key in ("epoch", "phase", "units"):
        if key not in row:
            raise PlotInputError(f"{where}.{key}", "is missing from the epoch row")
    epoch = row["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise PlotInputError(f"{where}.epoch", f"must be a non-negative integer, got {epoch!r}")
    if not isinstance(row["phase"], str):
        raise PlotInputError(f"{where}.phase", f"must be a phase name such as 'grow', got {row['phase']!r}")
    for key in (*CURVE_FIELDS, SUPPORT_ACCURACY):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise PlotInputError(f"{where}.{key}", f"must be a number or null, got {value!r}")
    if isinstance(row["units"], (str, bytes)) or not isinstance(row["units"], Sequence):
        raise PlotInputError(f"{where}.units", "must be a list of units ({name, width, selected, ratio, grew})")
    units = [_read_unit(unit, f"{where}.units[{i}]") for i, unit in enumerate(row["units"])]
    names = [unit["name"] for unit in units]
    if len(set(names)) != len(names):
        raise PlotInputError(f"{where}.units", f"unit names must be distinct, got {names}")
    return {**row, "units": units}


def _read_unit(unit: Any, where: str) -> dict[str, Any]:
    if not isinstance(unit, Mapping):
        raise PlotInputError(where, "must be a unit object with name, width, selected, ratio and grew")
    name = unit.get("name")
    if not isinstance(name, str) or not name:
        raise PlotInputError(f"{where}.name", f"must be a unit name such as 'conv1', got {name!r}")
    width = unit.get("width")
    if isinstance(width, bool) or not isinstance(width, int) or width < 0:
        raise PlotInputError(f"{where}.width", f"must be a non-negative integer, got {width!r}")
    selected = unit.get("selected", width)
    if isinstance(selected, bool) or not isinstance(selected, int) or not 0 <= selected <= width:
        raise PlotInputError(f"{where}.selected", f"must be an integer between 0 and the width {width}, "
                                                  f"got {selected!r}")
    ratio = unit.get("ratio", selected / width if width else None)
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                              or not 0.0 <= ratio <= 1.0):
        raise PlotInputError(f"{where}.ratio", f"must be a fraction in [0, 1] or null, got {ratio!r}")
    grew = unit.get("grew", 0)
    if isinstance(grew, bool) or not isinstance(grew, int) or width + grew < 0:
        raise PlotInputError(f"{where}.grew", f"must be an integer no smaller than -width, got {grew!r}")
    return {"name": name, "width": width, "selected": selected, "ratio": ratio, "grew": grew}


def _read_events(events: Any, where: str) -> tuple[ArchitectureChange, ...]:
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise PlotInputError(where, "must be a list of architecture changes ({epoch, change, units})")
    changes = []
    for i, event in enumerate(events):
        path = f"{where}[{i}]"
        if not isinstance(event, Mapping):
            raise PlotInputError(path, "must be an object with epoch, change and units")
        epoch, change, units = event.get("epoch"), event.get("change"), event.get("units")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < -1:
            raise PlotInputError(f"{path}.epoch", f"must be an epoch number (-1: before the first), got {epoch!r}")
        if not isinstance(change, str):
            raise PlotInputError(f"{path}.change", f"must be 'widen', 'prune' or 'add_block', got {change!r}")
        if not isinstance(units, Mapping):
            raise PlotInputError(f"{path}.units", "must map unit names to [old width, new width]")
        widths: dict[str, tuple[int, int]] = {}
        for name, pair in units.items():
            if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
                    or not all(isinstance(w, int) and not isinstance(w, bool) for w in pair)):
                raise PlotInputError(f"{path}.units.{name}", f"must be [old width, new width], got {pair!r}")
            widths[str(name)] = (pair[0], pair[1])
        changes.append(ArchitectureChange(epoch, change, widths))
    return tuple(changes)


def _changes_from_history(epochs: np.ndarray, units: list[str], width: np.ndarray,
                          grew: np.ndarray) -> tuple[ArchitectureChange, ...]:
    """Changes as the history shows them: ``grew`` at an epoch's end, and units that appear in the next epoch."""
    changes = []
    for column, epoch in enumerate(epochs):
        resized = {units[row]: (int(width[row, column]), int(width[row, column] + grew[row, column]))
                   for row in np.flatnonzero(np.nan_to_num(grew[:, column]) != 0)}
        if resized:
            grown = any(new > old for old, new in resized.values())
            changes.append(ArchitectureChange(int(epoch), "widen" if grown else "prune", resized))
        if column + 1 < len(epochs):
            added = {units[row]: (0, int(width[row, column + 1]))
                     for row in np.flatnonzero(np.isnan(width[:, column]) & ~np.isnan(width[:, column + 1]))}
            if added:
                changes.append(ArchitectureChange(int(epoch), "add_block", added))
    return tuple(changes)


def _unit_order(per_epoch: list[list[str]]) -> list[str]:
    """The last epoch's units (model order), then units that were gone by then, in order of appearance."""
    last = per_epoch[-1] if per_epoch else []
    seen = dict.fromkeys(last)
    for names in per_epoch:
        for name in names:
            seen.setdefault(name)
    return list(seen)


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)
