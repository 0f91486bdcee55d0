"""`netgrow grow` and `netgrow compare` on local files: the engine with no service around it."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    grow = subparsers.add_parser("grow", help="run a job spec locally (any method) and write its result JSON")
    grow.add_argument("spec", type=Path, help="job spec JSON, e.g. examples/digits-vgg-grow.json")
    grow.add_argument("--out", type=Path, help="where to write the result JSON (default: print a summary only)")
    grow.add_argument("--checkpoint-dir", type=Path, help="write per-epoch checkpoints here (to resume later)")
    grow.add_argument("--resume", type=Path, help="resume from this checkpoint file")
    grow.add_argument("--quiet", action="store_true", help="no progress bar")
    grow.set_defaults(handler=grow_command)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"error: {what} {str(path)!r} does not exist")
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {what} {str(path)!r} is not valid JSON: {exc}")


def grow_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from growth import SpecError, run
    from growth.events import ArchitectureChanged, EpochEnd
    from growth.spec import parse_spec

    raw = read_json(args.spec, "spec")
    try:
        spec = parse_spec(raw)
    except SpecError as exc:
        print(f"error: invalid spec {str(args.spec)!r}: {exc}", file=sys.stderr)
        return 2
    bar = tqdm(total=spec.total_epochs, unit="epoch", disable=args.quiet, dynamic_ncols=True)

    def on_event(event: Any) -> None:
        if isinstance(event, EpochEnd):
            widths = " ".join(str(u.width) for u in event.units)
            bar.set_postfix_str(f"{event.phase} loss={event.train_loss:.3f} val={event.val_accuracy:.3f} "
                                f"widths=[{widths}]", refresh=False)
            bar.update(1)
        elif isinstance(event, ArchitectureChanged):
            grown = ", ".join(f"{u} {old}→{new}" for u, (old, new) in event.units.items())
            bar.write(f"epoch {event.epoch}: {event.change} {grown}")

    try:
        result = run(spec, on_event, checkpoint_dir=args.checkpoint_dir, resume_from=args.resume)
    except SpecError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    final = result["final"]
    widths = ", ".join(f"{name}={w}" for name, w in final["widths"].items())
    print(f"{result['method']}: test accuracy {final['test_accuracy']:.2%}, {final['params']:,} params, "
          f"{final['macs']:,} MACs, {result['epochs']} epochs in {result['wall_seconds']:.1f} s")
    print(f"widths: {widths}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"result written to {args.out}")
    return 0


def compare_files(paths: list[Path], fmt: str = "markdown", out: Path | None = None) -> int:
    """Print (or write) the Table 4/5 comparison of result JSON files."""
    from growth import SpecError
    from growth.compare import compare

    results = [read_json(path, "result") for path in paths]
    try:
        table = compare(results, labels=[path.stem for path in paths])
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = {"markdown": table.to_markdown, "csv": table.to_csv,
            "json": lambda: json.dumps(table.to_json(), indent=1)}[fmt]()
    if out is not None:
        out.write_text(text)
        print(f"comparison written to {out}")
    else:
        print(text)
    return 0
