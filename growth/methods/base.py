"""What every training method plugs into the shared run loop.

The loop (growth.engine) owns data, epochs, evaluation, events and
checkpoints. A method decides four things: which optimizer trains the model,
which phase and learning rate each epoch has (and when the run is over), what
happens to the architecture at an epoch's end, and which extra fields go into
the result. Its own state is plain data so that it checkpoints with the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from ..engine import RunContext
    from ..spec import JobSpec


@dataclass
class Change:
    """An architecture change made at an epoch boundary: ``units`` maps unit → (old width, new width)."""

    kind: str  # "widen" | "prune" | "add_block"
    units: dict[str, tuple[int, int]] = field(default_factory=dict)


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

    def __init__(self, spec: "JobSpec") -> None:
        self.spec = spec

    # -- optimizer -------------------------------------------------------------
    def make_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        t = self.spec.train
        return torch.optim.SGD(param_groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)

    # -- schedule --------------------------------------------------------------
    def schedule(self, epoch: int) -> tuple[str, float] | None:
        """(phase, lr) of ``epoch``, or None when the run is complete."""
        t = self.spec.train
        if epoch >= t.epochs:
            return None
        return "train", step_lr(t.lr, epoch, t.lr_milestones, t.lr_gamma)

    # -- hooks -----------------------------------------------------------------
    def prepare(self, ctx: "RunContext") -> list[Change]:
        """Called once before the first epoch of a fresh (not resumed) run."""
        return []

    def before_evaluation(self, ctx: "RunContext") -> None:
        """Called after each epoch's training, before its validation pass."""

    def after_epoch(self, ctx: "RunContext", epoch: int, val_accuracy: float) -> list[Change]:
        """Called after each epoch's evaluation; may change the architecture in place."""
        return []

    def result_extras(self, ctx: "RunContext") -> dict[str, Any]:
        return {}

    # -- state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
