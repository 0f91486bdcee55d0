"""AutoGrow (Wen, Yan, Chen, Li: *AutoGrow: Automatic Layer Growing in Deep Convolutional Networks*, KDD 2020).

Depth growth of a residual seed: every K (``autogrow.every``) epochs one basic
block is appended to each stage that is still growing; a stage stops for good
once the best validation accuracy improved by less than ``min_improvement``
percentage points over the last J (``patience``) epochs, or when it reaches
``max_blocks``. When no stage grows, the network is fine-tuned with a step
schedule (lr × 0.1 at half and at three quarters of ``finetune_epochs``).
Decisions read the validation split; AutoGrow's own code reads test accuracy.
"""
from __future__ import annotations

from typing import Any

from .. import surgery
from .base import Change, Method, RunContext, step_lr


_POINTS_TOLERANCE = 1e-9  # percentage points


class AutoGrow(Method):
    name = "autogrow"

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.growing = list(range(len(spec.model["stages"])))  # indices of stages still growing
        self.val_history: list[float] = []
        self.finetune_start: int | None = None

    @classmethod
    def epoch_budget(cls, spec: Any) -> int:
        return spec.train.epochs + spec.autogrow.finetune_epochs

    def schedule(self, epoch: int) -> tuple[str, float] | None:
        t, a = self.spec.train, self.spec.autogrow
        if self.finetune_start is None and epoch >= t.epochs:
            self.finetune_start = t.epochs
        if self.finetune_start is None:
            return "grow", step_lr(t.lr, epoch, t.lr_milestones, t.lr_gamma)
        k = epoch - self.finetune_start
        if k < a.finetune_epochs:
            milestones = [a.finetune_epochs // 2, (3 * a.finetune_epochs) // 4]
            return "finetune", step_lr(t.lr, k, [m for m in milestones if m > 0], 0.1)
        return None

    def _stalled(self) -> bool:
        j = self.spec.autogrow.patience
        if len(self.val_history) <= j:
            return False
        gain = max(self.val_history) - max(self.val_history[:-j])
        # Accuracies are k/n; their float difference can fall just short of a gain that
        # equals the minimum exactly (0.9005 − 0.9 = 0.0004999999999999449).
        return gain * 100.0 < self.spec.autogrow.min_improvement - _POINTS_TOLERANCE

    def after_epoch(self, ctx: RunContext, epoch: int, val_accuracy: float) -> list[Change]:
        a = self.spec.autogrow
        self.val_history.append(val_accuracy)
        if self.finetune_start is not None or (epoch + 1) % a.every:
            return []
        stages = ctx.model.to_spec()["stages"]
        stalled = self._stalled()
        self.growing = [s for s in self.growing if not stalled and len(stages[s]["blocks"]) < a.max_blocks]
        if not self.growing:
            self.finetune_start = epoch + 1
            return []
        change = Change("add_block")
        for s in self.growing:
            n_blocks = len(stages[s]["blocks"])
            surgery.add_block(ctx.model, ctx.optimizer, s, initializer=a.initializer, generator=ctx.init_rng,
                              std=a.init_std)
            block_unit = f"stage{s + 1}.block{n_blocks + 1}"
            change.units[block_unit] = (0, ctx.model.unit(block_unit).width)
        return [change]

    def state_dict(self) -> dict[str, Any]:
        return {"growing": self.growing, "val_history": self.val_history, "finetune_start": self.finetune_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.growing = list(state["growing"])
        self.val_history = list(state["val_history"])
        self.finetune_start = state["finetune_start"]
