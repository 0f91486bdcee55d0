"""scikit-learn's handwritten digits: 1,797 real 8×8 grey images, 10 classes."""
from __future__ import annotations

import torch

from growth.data.raw import RawDataset

# load_digits stores ink intensity as integers 0..16.
DIGITS_MAX_INTENSITY = 16.0


def read_digits() -> RawDataset:
    """The digits as 1×8×8 float images in 0..16 (``scale`` maps them to [0, 1]).

    scikit-learn is imported here rather than at module level: ``growth`` must
    import with torch alone, and only this dataset needs it.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return RawDataset(
        train_images=images,
        train_labels=labels,
        test_images=None,
        test_labels=None,
        num_classes=10,
        scale=1.0 / DIGITS_MAX_INTENSITY,
        class_names=tuple(str(digit) for digit in range(10)),
    )
