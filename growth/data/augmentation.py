"""Standard CIFAR-style augmentation, batched: random crop with padding + horizontal flip."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The usual CIFAR recipe pads 32-pixel images by 4: an eighth of the side.
PAD_FRACTION = 8


def default_pad(height: int) -> int:
    """An eighth of the image side, at least one pixel (4 for 32×32, 1 for 8×8)."""
    return max(1, height // PAD_FRACTION)


def augment(x: Tensor, generator: torch.Generator, pad: int | None = None, flip: bool = True) -> Tensor:
    """Randomly crop and flip each image of an N×C×H×W batch; returns a new tensor.

    Each image is zero-padded by ``pad`` pixels on every side, cropped back to
    H×W at an offset drawn uniformly per sample, and mirrored left-right with
    probability 1/2 (if ``flip``). Both happen in two ``gather`` calls on
    ``x``'s device, without a loop over samples. Offsets and flips are drawn
    from ``generator`` (on its device), so the same generator state gives the
    same output. ``pad=None`` uses ``default_pad(H)``.
    """
    if x.ndim != 4:
        raise ValueError(f"augment expects an N×C×H×W batch, got shape {tuple(x.shape)}")
    n, channels, height, width = x.shape
    pad = default_pad(height) if pad is None else pad
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")

    draw_device = generator.device
    row_offset = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw_device).to(x.device)
    col_offset = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw_device).to(x.device)
    if flip:
        mirrored = torch.rand(n, generator=generator, device=draw_device).lt(0.5).to(x.device)
    else:
        mirrored = torch.zeros(n, dtype=torch.bool, device=x.device)

    # Output pixel (i, j) of sample s reads padded pixel
    # (row_offset[s] + i, col_offset[s] + j'), where j' = W-1-j when mirrored:
    # cropping and flipping are one index map per axis.
    rows = row_offset[:, None] + torch.arange(height, device=x.device)  # n×H
    cols_in_crop = torch.arange(width, device=x.device).expand(n, width)  # n×W
    cols_in_crop = torch.where(mirrored[:, None], width - 1 - cols_in_crop, cols_in_crop)
    cols = col_offset[:, None] + cols_in_crop  # n×W

    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    padded_width = padded.shape[-1]
    row_index = rows[:, None, :, None].expand(n, channels, height, padded_width)
    cropped_rows = padded.gather(2, row_index)  # n×C×H×(W+2·pad)
    col_index = cols[:, None, None, :].expand(n, channels, height, width)
    return cropped_rows.gather(3, col_index)
