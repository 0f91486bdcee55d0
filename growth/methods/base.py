"""The method contract: what every training method plugs into the shared run loop.

The loop (growth.engine) owns data, epochs, evaluation, events and
checkpoints, and hands a method the live run as a :class:`RunContext`. A
method decides which optimizer trains the model (and which spec field each of
its arguments comes from), which phase and learning rate each epoch has (and
when the run is over, and how many epochs that is at most), what happens when
the learning rate changes, what happens to the architecture at an epoch's
end, and which extra fields go into each epoch's record and into the result.
Its own state is plain data so that it checkpoints with the rest.

Methods register themselves by ``name``; ``Method.registry`` is the one list of
methods (``growth.spec`` reads it). The job spec a method gets is a
``growth.spec.JobSpec``; it is typed loosely here because the job format sits
above the methods (it asks them for their names and epoch budgets).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..data import Splits
from ..errors import ArgumentError, SpecError
from ..events import UnitStat
from ..optim.structure import selected_per_unit
from ..training import Precision, evaluate
from .support import has_support, support_accuracies


@dataclass
class Change:
    """An architecture change made at an epoch boundary: ``units`` maps unit → (old width, new width)."""

    kind: str  # "init" (the network a run starts from) | "widen" | "prune" | "add_block"
    units: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything a method may touch while the run is live."""

    spec: Any  # growth.spec.JobSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    splits: Splits
    device: torch.device
    input_shape: tuple[int, int, int]
    shuffle_rng: torch.Generator
    augment_rng: torch.Generator | None
    init_rng: torch.Generator
    history: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    precision: Precision = field(default_factory=Precision)  # train.precision: autocast, loss scaling
    channels_last: bool = False  # train.channels_last: the model's conv weights and its batches
    train_loss: float = math.nan  # mean training loss of the epoch just trained (not yet in history)

    def evaluate(self, model: nn.Module | None = None, split: str = "val") -> float:
        x, y = getattr(self.splits, split)
        return evaluate(model if model is not None else self.model, x, y, precision=self.precision,
                        channels_last=self.channels_last)

    def unit_stats(self) -> list[UnitStat]:
        """Width and selected filters of every unit (see ``growth.optim.structure``), one host sync."""
        units = self.model.units()
        stats = []
        for unit, selected in zip(units, selected_per_unit(self.optimizer, units)):
            producers = max(len(unit.producers), 1)
            # One division of the integer counts: (48 / 5) / 12 would give 0.7999999999999999
            # for a ratio of exactly 0.8 and miss a threshold of 0.8.
            ratio = selected / (producers * unit.width)
            stats.append(UnitStat(unit.name, unit.width, round(selected / producers), ratio))
        return stats


@contextmanager
def spec_fields(fields: Mapping[str, str]) -> Iterator[None]:
    """Turn an optimizer's :class:`ArgumentError` into a :class:`SpecError` naming the spec field.

    ``fields`` maps the optimizer's argument (``lr``) to the dotted field it was
    read from (``train.lr``); an argument not in it keeps its own name.
    """
    try:
        yield
    except ArgumentError as exc:
        raise SpecError(fields.get(exc.argument, exc.argument),
                        f"{exc.requirement}, got {exc.value!r}") from exc


def step_lr(base: float, epoch: int, milestones: list[int], gamma: float) -> float:
    """MultiStepLR's value at ``epoch`` (0-based, milestones counted in epochs)."""
    return base * gamma ** sum(1 for m in milestones if epoch >= m)


class Method:
    """Base class; subclasses register themselves in ``METHODS`` by ``name``."""

    name: ClassVar[str]
    registry: ClassVar[dict[str, type["Method"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Method.registry[cls.name] = cls

    # The spec field each optimizer argument comes from, for errors (see ``spec_fields``).
    optimizer_fields: ClassVar[dict[str, str]] = {
        "lr": "train.lr", "momentum": "train.momentum", "weight_decay": "train.weight_decay",
    }

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    @classmethod
    def check_spec(cls, spec: Any) -> None:
        """Raise ``SpecError`` naming a field this method cannot honour; ``parse_spec`` calls it."""

    @classmethod
    def epoch_budget(cls, spec: Any) -> int:
        """The most epochs a run of ``spec`` takes, all phases (what ``schedule`` allows when nothing stops early)."""
        return spec.train.epochs

    # -- optimizer -------------------------------------------------------------
    def make_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        """The run's optimizer; on resume it is built after ``load_state_dict``, so a method that
        replaces ``ctx.optimizer`` mid-run (in ``after_epoch``) builds the replacement here too."""
        t = self.spec.train
        return torch.optim.SGD(param_groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)

    def build_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        """``make_optimizer``, with a bad argument reported as the spec field it came from."""
        with spec_fields(self.optimizer_fields):
            return self.make_optimizer(param_groups)

    # -- schedule --------------------------------------------------------------
    def schedule(self, epoch: int) -> tuple[str, float] | None:
        """(phase, lr) of ``epoch``, or None when the run is complete."""
        t = self.spec.train
        if epoch >= t.epochs:
            return None
        return "train", step_lr(t.lr, epoch, t.lr_milestones, t.lr_gamma)

    # -- hooks -----------------------------------------------------------------
    def lr_changed(self, ctx: RunContext, old: float, new: float) -> None:
        """Called before an epoch whose learning rate differs from the previous epoch's."""

    def check_model(self, model: Any) -> None:
        """Raise ``SpecError`` if this method's settings do not fit ``model`` (built on the meta device).

        Part of ``growth.preflight.check_runnable``: it runs at submission and before a run starts.
        """

    def prepare(self, ctx: RunContext) -> list[Change]:
        """Called once before the first epoch of a fresh (not resumed) run."""
        return []

    def before_evaluation(self, ctx: RunContext) -> None:
        """Called after each epoch's training, before its validation pass."""

    def after_epoch(self, ctx: RunContext, epoch: int, val_accuracy: float) -> list[Change]:
        """Called after each epoch's evaluation; may change the architecture in place.

        It may also replace ``ctx.optimizer`` (see ``make_optimizer``); the next epoch trains with it.
        """
        return []

    def epoch_sparsity(self, ctx: RunContext) -> float | None:
        """The epoch record's ``sparsity`` (share of all-zero groups), or None where the method has none."""
        return None

    def support_accuracy(self, ctx: RunContext, splits: Sequence[str]) -> dict[str, float] | None:
        """Accuracy on ``splits`` of the network restricted to Γ's support, None where there is no Γ.

        Every run whose optimizer is DessiLBI reports it (``growth.methods.support``): the epoch
        record's ``support_val_accuracy`` and the result's ``final.support_{val,test}_accuracy``.
        """
        return support_accuracies(ctx, splits) if has_support(ctx.optimizer) else None

    def final_support_accuracy(self, ctx: RunContext) -> dict[str, float] | None:
        """The result's ``final.support_{val,test}_accuracy``: by default the network Γ selects at the end."""
        return self.support_accuracy(ctx, ("val", "test"))

    def result_extras(self, ctx: RunContext) -> dict[str, Any]:
        """Fields the method adds to the run's result."""
        return {}

    # -- state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
