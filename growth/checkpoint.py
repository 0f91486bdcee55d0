"""Checkpoints a run can resume from exactly where it stopped.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it
loads with ``torch.load(..., weights_only=True)``: no pickle is ever trusted.
It holds the model's current architecture (its spec) and weights, the
optimizer state with the parameter *names* of every param group (so a grown
network's state maps back onto the right parameters), every RNG, the loop
position, the method's own state and the history so far.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
KEEP_LAST = 2


def checkpoint_path(directory: str | os.PathLike[str], epoch: int) -> Path:
    return Path(directory) / f"epoch-{epoch:05d}.pt"


def save(directory: str | os.PathLike[str], epoch: int, payload: dict[str, Any]) -> Path:
    """Write atomically (tmp file + rename) and keep only the last ``KEEP_LAST`` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, epoch)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT_VERSION, **payload}, tmp)
    os.replace(tmp, path)
    for old in sorted(directory.glob("epoch-*.pt"))[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return path


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    from .errors import SpecError

    path = Path(path)
    if not path.is_file():
        raise SpecError("resume_from", f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say so instead of a torch traceback
        raise SpecError("resume_from", f"{str(path)!r} is not a readable netgrow checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise SpecError("resume_from", f"{str(path)!r} is not a netgrow checkpoint (format {FORMAT_VERSION})")
    return payload


def optimizer_param_names(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> list[list[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


def regroup(param_groups: list[dict[str, Any]], names: list[list[str]], model: torch.nn.Module) -> list[dict[str, Any]]:
    """Param groups whose parameter order follows a checkpoint's, so ``load_state_dict`` maps state correctly."""
    by_name = dict(model.named_parameters())
    if len(names) != len(param_groups):
        raise ValueError("checkpoint has a different number of param groups than the model")
    return [{**{k: v for k, v in g.items() if k != "params"}, "params": [by_name[n] for n in group_names]}
            for g, group_names in zip(param_groups, names)]
