"""Try growth settings on a shipped example and watch the criterion: every unit's ratio, every epoch.

    python bench/growth_trials.py examples/fashion-vgg-grow.json \
        '{"optimizer": {"nu": 10, "lam": 1.5}, "growth": {"every": 8, "finetune_epochs": 0}}'

Prints, per epoch, the training loss, the validation accuracy and each unit's
``width:ratio`` (Γ-selected filters / filters), then the final widths. It reads
only the validation split, so settings chosen with it never look at the test
set. This is how the Fashion-MNIST growth settings were chosen
(BENCHMARKS.md, "Choosing the Fashion-MNIST growth settings").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import growth  # noqa: E402
from growth.events import EpochEnd  # noqa: E402


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("example", type=Path)
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON merged into the example, section by section")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = merged(json.loads(args.example.read_text()), json.loads(args.overrides))
    started = time.perf_counter()

    def show(event: Any) -> None:
        if isinstance(event, EpochEnd):
            units = " ".join(f"{u.width}:{u.ratio:.2f}" for u in event.units)
            print(f"epoch {event.epoch:2d} {event.phase:8s} loss {event.train_loss:.3f} "
                  f"val {event.val_accuracy:.3f} | {units}", flush=True)

    result = growth.run(spec, show)
    final = result["final"]
    print(f"final widths {list(final['widths'].values())}, {final['params']:,} params, "
          f"val {final['val_accuracy']:.4f}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
