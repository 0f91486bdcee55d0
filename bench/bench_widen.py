"""Time in-place widening of every unit of a VGG16-width network against a rebuild.

Each unit n grows to max(n + 8, ⌊1.1 n⌋) (DessiLBI's rule for plain nets) while the
optimizer holds a momentum buffer and two more parameter-shaped tensors per
parameter (like DessiLBI's V and Γ). Compared, in the same run:

- ``widen`` per unit     — ``growth.surgery.widen`` once per unit, in network order
                           (what the growth method does);
- ``widen_units``        — all units in one call, every tensor rewritten once;
- rebuild                — the authors' approach: build the wider model (Kaiming init),
                           copy the old weights into it, make a new optimizer (state lost);
- rebuild + copy state   — the same, also copying the optimizer state over.

    OMP_NUM_THREADS=1 python bench/bench_widen.py [--repeats 15]

Prints a Markdown table of median milliseconds and ratios to the plain rebuild.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from growth import surgery  # noqa: E402
from growth.models import GrowableNet, build_model  # noqa: E402

VGG16_SPEC: dict[str, Any] = {
    "family": "vgg",
    "in_channels": 3,
    "num_classes": 10,
    "layers": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "classifier": [],
    "input_size": 32,
}
STATE_KEYS = ("momentum_buffer", "v", "gamma")
GROUP_OPTIONS = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


def grown_width(n: int) -> int:
    return max(n + 8, math.floor(1.1 * n))


def fresh(seed: int) -> tuple[GrowableNet, torch.optim.SGD]:
    """The model and an SGD optimizer whose state is populated for every parameter."""
    g = torch.Generator().manual_seed(seed)
    model = build_model(VGG16_SPEC, generator=g)
    optimizer = torch.optim.SGD(model.param_groups(**GROUP_OPTIONS))
    for p in model.parameters():
        optimizer.state[p] = {key: torch.randn(p.shape, generator=g) for key in STATE_KEYS}
        optimizer.state[p]["step"] = torch.tensor(1.0)
    return model, optimizer


def widen_one_by_one(model: GrowableNet, optimizer: torch.optim.SGD, g: torch.Generator) -> None:
    for unit in model.units():
        surgery.widen(model, optimizer, unit, grown_width(unit.width), generator=g)


def widen_all_at_once(model: GrowableNet, optimizer: torch.optim.SGD, g: torch.Generator) -> None:
    surgery.widen_units(model, optimizer, {u.name: grown_width(u.width) for u in model.units()}, generator=g)


def rebuild(model: GrowableNet, optimizer: torch.optim.SGD, g: torch.Generator, *, copy_state: bool = False) -> None:
    spec = model.to_spec()
    spec["layers"] = [w if w == "M" else grown_width(w) for w in spec["layers"]]
    wider = build_model(spec, generator=g)
    new_params = dict(wider.named_parameters())
    old_tensors = model.state_dict()
    with torch.no_grad():
        for name, new in wider.state_dict().items():
            old = old_tensors[name]
            new[tuple(slice(0, s) for s in old.shape)].copy_(old)
    new_optimizer = torch.optim.SGD(wider.param_groups(**GROUP_OPTIONS))
    if copy_state:
        for name, p in model.named_parameters():
            new_p = new_params[name]
            state = {}
            for key, value in optimizer.state[p].items():
                if value.ndim == 0:
                    state[key] = value
                    continue
                grown = torch.zeros_like(new_p)
                grown[tuple(slice(0, s) for s in value.shape)].copy_(value)
                state[key] = grown
            new_optimizer.state[new_p] = state


def median_ms(operation: Callable[[GrowableNet, torch.optim.SGD, torch.Generator], None], repeats: int) -> float:
    times = []
    for i in range(repeats + 1):  # the first run warms up allocator and kernels
        model, optimizer = fresh(seed=i)
        g = torch.Generator().manual_seed(1000 + i)
        start = time.perf_counter()
        operation(model, optimizer, g)
        elapsed = time.perf_counter() - start
        if i:
            times.append(elapsed)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    model, _ = fresh(0)
    n_params = sum(p.numel() for p in model.parameters())
    rows = [
        ("rebuild model + optimizer (state lost)", median_ms(rebuild, args.repeats)),
        ("rebuild + copy optimizer state", median_ms(lambda m, o, g: rebuild(m, o, g, copy_state=True), args.repeats)),
        ("`surgery.widen` per unit (state kept)", median_ms(widen_one_by_one, args.repeats)),
        ("`surgery.widen_units`, one call (state kept)", median_ms(widen_all_at_once, args.repeats)),
    ]
    baseline = rows[0][1]
    print(
        f"Widening all {len(model.units())} units of VGG16 widths ({n_params / 1e6:.2f} M params, "
        f"3 p-shaped state tensors each) to max(n+8, ⌊1.1n⌋); torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), median of {args.repeats}.\n"
    )
    print("| method | median ms | × rebuild time |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {ms / baseline:.2f} |")


if __name__ == "__main__":
    main()
