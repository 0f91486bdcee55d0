"""DessiLBI's own filter pruning (journal paper, sections 5.1–5.2, Tables 1–3).

Train the given network with DessiLBI for ``train.epochs`` epochs (κ, ν, λ from
``optimizer``; lr, momentum, weight decay and milestones from ``train``), remove
every filter Γ did not select, then fine-tune with plain momentum SGD for
``prune.finetune_epochs`` at ``prune.finetune_lr`` (``prune.finetune_momentum``,
``prune.finetune_weight_decay``): the phases ``"train"`` and ``"finetune"``, and
one ``"prune"`` change, as ``l1_prune`` has.

"Γ did not select", exactly: the optimizer's Γ after the last step of the last
training epoch (the Γ whose support that epoch's history row counts) is read
per unit. A channel is *selected* when Γ's group of that output filter is
non-zero for at least one of the unit's producers — a plain conv has one; in a
residual stage every block's last conv and the projection write the channel,
and it carries a signal as soon as one of them is selected
(``structure.selected_channels``). Every other channel is removed. The support at
that moment, not "ever selected": Γ's support can shrink as well as grow (a group
leaves when ‖V_g‖ falls back to λ), and the paper reads its masks (eq. 22) from
the Γ of the epoch it prunes at ("FT n": the structure after n epochs). A unit
with no selected channel keeps one, the channel with the largest ‖V_g‖ (largest
over its producers): the next one Γ would select. Kept filters keep their
trained weights W (W̃ = M ⊙ W, eq. 22), not Γ. Hidden linear layers are not
units; their element-wise Γ is not used.

What the pruned network computes: a channel whose filters are zeroed (the
Γ-support-restricted network) still emits a constant, its BatchNorm shift
relu(β − γ·μ/σ) (for a BN-free conv, relu(bias)), which the next layer reads;
the pruned network drops that channel altogether. Under zero padding that
constant's contribution differs at the image border, so it cannot be folded
into the next layer exactly, and the two networks agree only where every
removed channel's constant is zero. Fine-tuning absorbs the difference; the paper
fine-tunes too.

While DessiLBI trains, every epoch records the accuracy of the Γ-support network
(``support_val_accuracy``, ``growth.methods.support``), as ``grow`` does. After pruning
there is no Γ: fine-tuning epochs record none, and the result's
``final.support_{val,test}_accuracy`` is the Γ-support network's at the moment of
pruning, the paper's "Sparse Acc" of Tables 1–3 (the pruned network before
fine-tuning, up to the constant channels above).

Fine-tuning starts a fresh SGD: V, Γ and DessiLBI's momentum belong to the
lifted problem and are dropped (the authors' code builds a new optimizer too).
From then on a unit's ``selected`` count in the history is its filters with
non-zero weights, the rule ``growth.optim.structure`` applies to every
optimizer but DessiLBI. The paper's per-layer cap on the pruned share (Table 3)
is not offered: ``prune.keep`` is refused, as are ``prune.sensitivity`` and
``prune.from_checkpoint`` (``init`` starts DessiLBI from a trained network).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import SpecError
from ..optim.prox import group_norms
from ..optim.structure import selected_channels
from .base import Change, RunContext
from .grow import DESSILBI_FIELDS, dessilbi_optimizer
from .pruning import PruneThenFinetune

# prune.* fields that belong to L1 pruning, and why they have no meaning here.
_L1_ONLY_FIELDS = {
    "keep": "the filters kept are the ones Γ selected, not a share per unit; drop prune.keep "
            "(or use method 'l1_prune')",
    "sensitivity": "the sensitivity scan ranks filters by their L1 norms; drop prune.sensitivity "
                   "(or use method 'l1_prune')",
    "from_checkpoint": "DessiLBI trains the network before pruning it; to start it from trained "
                       "weights, use init",
}


def entry_scores(optimizer: torch.optim.Optimizer, unit: Any) -> Tensor:
    """‖V_g‖ of every channel, the largest over the unit's producers: Γ selects a channel once it exceeds λ."""
    norms = []
    for conv, _ in unit.producers:
        v = optimizer.state.get(conv.weight, {}).get("v")
        norms.append(group_norms(v) if v is not None else torch.zeros(conv.out_channels, device=conv.weight.device))
    return torch.stack(norms).amax(dim=0)


def kept_channels(optimizer: torch.optim.Optimizer, unit: Any) -> Tensor:
    """Indices (ascending) of the unit's channels Γ selected; the nearest to selection if there is none."""
    selected = selected_channels(optimizer, unit)
    if not bool(selected.any()):
        return torch.argmax(entry_scores(optimizer, unit)).reshape(1).to(selected.device)
    return selected.nonzero().flatten()


class DessiLBIPrune(PruneThenFinetune):
    name = "dessilbi_prune"
    optimizer_fields = DESSILBI_FIELDS

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.support_at_prune: dict[str, float] | None = None  # {"val", "test"} of the Γ-support network

    @classmethod
    def check_spec(cls, spec: Any) -> None:
        defaults = type(spec.prune)()
        for name, why in _L1_ONLY_FIELDS.items():
            if getattr(spec.prune, name) != getattr(defaults, name):
                raise SpecError(f"prune.{name}", f"is not used by method 'dessilbi_prune': {why}")

    def make_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        if not self.pruned:
            return dessilbi_optimizer(self.spec, param_groups)
        p = self.spec.prune
        return torch.optim.SGD(param_groups, lr=p.finetune_lr, momentum=p.finetune_momentum,
                               weight_decay=p.finetune_weight_decay)

    def prune(self, ctx: RunContext) -> list[Change]:
        self.support_at_prune = self.support_accuracy(ctx, ("val", "test"))
        return super().prune(ctx)

    def final_support_accuracy(self, ctx: RunContext) -> dict[str, float] | None:
        return self.support_at_prune if self.pruned else super().final_support_accuracy(ctx)

    def kept_filters(self, ctx: RunContext) -> dict[str, Tensor]:
        return {unit.name: kept_channels(ctx.optimizer, unit) for unit in ctx.model.units()}

    def start_finetuning(self, ctx: RunContext) -> None:
        ctx.optimizer = self.build_optimizer(ctx.model.param_groups())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "support_at_prune": self.support_at_prune}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.support_at_prune = state["support_at_prune"]
