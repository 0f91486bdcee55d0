"""L1 filter pruning (Li, Kadav, Durdanovic, Samet, Graf: *Pruning Filters for Efficient ConvNets*, ICLR 2017).

Train the full model (or load it from a checkpoint), rank each listed unit's
filters by the sum of absolute kernel weights, physically remove the smallest
so that ``prune.keep[unit]`` of them stay (each layer ranked independently on
the trained weights, their "independent" strategy: all units are ranked before
any is cut, as Torch-Pruning's ``MetaPruner`` does, see
tests/growth/test_l1_prune_matches_torch_pruning.py), then fine-tune at a
constant small learning rate (the phases ``growth.methods.pruning`` shares with
``dessilbi_prune``). Optionally, before pruning, a sensitivity
analysis prunes each unit alone at rising ratios and records validation accuracy.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch

from .. import surgery
from ..errors import SpecError
from .base import Change, RunContext
from .pruning import PruneThenFinetune


def filter_l1_norms(unit: Any) -> torch.Tensor:
    """Σ|W| of every output filter, summed over the unit's producers (coupled channels rank together)."""
    norms = [conv.weight.detach().abs().flatten(1).sum(dim=1) for conv, _ in unit.producers]
    return torch.stack(norms).sum(dim=0)


# keep·n is compared with whole filter counts: 0.07·100 is 7.000000000000001 and
# (1 − 0.7)·10 is 3.0000000000000004 in floating point, which must still keep 7 and 3.
_COUNT_TOLERANCE = 1e-9


def kept_count(keep: float, width: int) -> int:
    """⌈keep·width⌉ filters, at least one, with float error in keep·width ignored."""
    return max(1, math.ceil(keep * width - _COUNT_TOLERANCE))


def keep_indices(unit: Any, keep: float) -> torch.Tensor:
    """Indices (ascending) of the ⌈keep·n⌉ filters with the largest L1 norms."""
    n_keep = kept_count(keep, unit.width)
    top = torch.topk(filter_l1_norms(unit), n_keep, largest=True, sorted=False).indices
    return torch.sort(top).values


class L1Prune(PruneThenFinetune):
    name = "l1_prune"
    train_phase = "dense"

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.sensitivity: dict[str, list[list[float]]] = {}

    @classmethod
    def training_epochs(cls, spec: Any) -> int:
        # A network that starts trained (init, or a checkpoint) is pruned before the first epoch.
        return 0 if spec.starts_trained else spec.train.epochs

    def check_model(self, model: Any) -> None:
        for unit in self.spec.prune.keep:
            if unit not in {u.name for u in model.units()}:
                valid = ", ".join(u.name for u in model.units())
                raise SpecError(f"prune.keep.{unit}", f"no such unit in this model; units are {valid}")

    def prepare(self, ctx: RunContext) -> list[Change]:
        if not self.spec.starts_trained:
            return []
        if self.spec.prune.from_checkpoint:
            _load_weights(ctx.model, self.spec.prune.from_checkpoint)
        return self.prune(ctx)

    def prune(self, ctx: RunContext) -> list[Change]:
        if self.spec.prune.sensitivity:
            self.sensitivity = self._sensitivity(ctx)
        return super().prune(ctx)

    def kept_filters(self, ctx: RunContext) -> dict[str, torch.Tensor]:
        # Ranked on the trained weights, every unit before any is cut (``PruneThenFinetune.prune``):
        # ranking a unit after its predecessor lost input kernels would be Li et al.'s "greedy"
        # strategy, dependent on keep's key order.
        return {name: keep_indices(ctx.model.unit(name), keep) for name, keep in self.spec.prune.keep.items()}

    def _sensitivity(self, ctx: RunContext) -> dict[str, list[list[float]]]:
        """Validation accuracy after pruning each unit alone at each ratio (Li et al., Fig. 2)."""
        curves: dict[str, list[list[float]]] = {}
        for unit in ctx.model.units():
            curve = []
            for ratio in self.spec.prune.sensitivity_ratios:
                trial = copy.deepcopy(ctx.model)
                trial_unit = trial.unit(unit.name)
                surgery.prune(trial, None, trial_unit, keep_indices(trial_unit, 1.0 - ratio))
                curve.append([ratio, ctx.evaluate(trial, "val")])
            curves[unit.name] = curve
        return curves

    def result_extras(self, ctx: RunContext) -> dict[str, Any]:
        return {"sensitivity": self.sensitivity} if self.sensitivity else {}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "sensitivity": self.sensitivity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sensitivity = state["sensitivity"]


def _load_weights(model: torch.nn.Module, path: str) -> None:
    """Weights from a netgrow checkpoint (.pt) or a safetensors file, for the job's own architecture."""
    file = Path(path)
    if not file.is_file():
        raise SpecError("prune.from_checkpoint", f"{path!r} does not exist")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            payload = torch.load(file, map_location="cpu", weights_only=True)
            state = payload.get("model", payload) if isinstance(payload, dict) else payload
        model.load_state_dict(state)
    except (RuntimeError, ValueError, OSError, KeyError, AttributeError) as exc:
        raise SpecError("prune.from_checkpoint",
                        f"could not load weights for this model from {path!r}: the architecture must match "
                        f"the job's `model` ({str(exc).splitlines()[0]})") from exc
