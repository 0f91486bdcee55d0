"""Events a run reports through its ``on_event`` callback.

They are plain dataclasses whose ``to_dict()`` is JSON-serialisable, so the
CLI can print them, the worker can store them and the service can stream them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class UnitStat:
    """One growth unit (a set of channels that grows or shrinks together) at an epoch's end."""

    name: str
    width: int
    selected: int  # filters whose Γ group is non-zero (== width for methods without Γ)
    ratio: float  # selected / width, eq. (23)
    grew: int = 0  # channels added (negative: removed) at this epoch's end


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 0-based, counts every epoch of the run across phases
    phase: str
    train_loss: float
    val_accuracy: float
    lr: float
    params: int
    macs: int
    seconds: float
    units: list[UnitStat]
    sparsity: float | None = None  # share of all-zero groups (RMDA / prox-SGD), else None
    # validation accuracy of the network restricted to Γ's support (growth.methods.support), None without Γ
    support_val_accuracy: float | None = None
    checkpoint: str | None = None  # path of the checkpoint written after this epoch
    kind: str = field(default="epoch", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArchitectureChanged:
    """Widening, pruning or a new block; ``spec`` is the model spec after the change."""

    epoch: int
    change: str  # "init" (the network a run starts from) | "widen" | "prune" | "add_block"
    units: dict[str, list[int]]  # unit name -> [old width, new width]
    spec: dict[str, Any]
    kind: str = field(default="architecture", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointWritten:
    epoch: int
    path: str
    kind: str = field(default="checkpoint", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Finished:
    result: dict[str, Any]  # the same object `netgrow grow --out` writes
    kind: str = field(default="finished", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Event = EpochEnd | ArchitectureChanged | CheckpointWritten | Finished
