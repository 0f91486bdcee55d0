"""What every dataset reader returns, before splitting and normalisation."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class RawDataset:
    """Images as stored (uint8 pixels or floats), labels as int64, N×C×H×W.

    ``scale`` maps the stored values to [0, 1] (1/255 for 8-bit pixels); the
    loader applies it per split so that the whole dataset is never held as
    float32 twice. ``test`` is None for datasets that carve their test set out
    of the same pool (digits, synthetic).
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor | None
    test_labels: Tensor | None
    num_classes: int
    scale: float = 1.0
    class_names: tuple[str, ...] | None = None

    @property
    def has_test_split(self) -> bool:
        return self.test_images is not None
