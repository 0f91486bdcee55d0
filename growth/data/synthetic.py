"""Class-conditional noisy patterns of any size: a fast, learnable task for tests.

Each class is one fixed smooth random template (coarse Gaussian noise upsampled
bilinearly, so neighbouring pixels correlate the way a conv net expects);
a sample is its class template plus i.i.d. Gaussian pixel noise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from growth.data.raw import RawDataset

# The dataset is a fixed function of its spec, like a real dataset on disk:
# the run seed picks the split, never the data, so runs with different seeds
# see the same task.
SYNTHETIC_DATA_SEED = 1_000_003

# A coarse grid of about a quarter of the image side keeps the templates
# smooth but still distinct in their spatial layout.
COARSE_FRACTION = 4


def make_synthetic(num_classes: int, channels: int, size: int, samples: int, noise: float) -> RawDataset:
    """``samples`` float images C×size×size with balanced, shuffled labels."""
    generator = torch.Generator().manual_seed(SYNTHETIC_DATA_SEED)
    coarse = max(2, size // COARSE_FRACTION)
    templates = torch.randn(num_classes, channels, coarse, coarse, generator=generator)
    templates = F.interpolate(templates, size=(size, size), mode="bilinear", align_corners=False)
    # Unit pixel spread per template, so `noise` reads as a noise-to-signal ratio.
    templates = templates / templates.flatten(1).std(dim=1).clamp(min=1e-6).view(-1, 1, 1, 1)

    labels = torch.arange(samples) % num_classes
    labels = labels[torch.randperm(samples, generator=generator)]
    pixel_noise = torch.randn(samples, channels, size, size, generator=generator)
    images = templates[labels] + noise * pixel_noise
    return RawDataset(
        train_images=images,
        train_labels=labels,
        test_images=None,
        test_labels=None,
        num_classes=num_classes,
        scale=1.0,
        class_names=None,
    )
