"""`netgrow plot`: the pictures of result files (drawn here) or of jobs on a server (drawn there).

    netgrow plot grown.json l1.json --out pictures/          # local result JSON files
    netgrow plot JOB_ID [JOB_ID ...] --out pictures/         # jobs on --server / NETGROW_SERVER

Per run it writes ``<name>-timeline``, ``-heatmap`` and ``-curves`` (``<name>``: the
file's stem, or the job id), and with two or more runs ``comparison``, each as
SVG, PNG or both; ``--plots`` picks some of them. It prints every path written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PLOT_NAMES = ("timeline", "heatmap", "curves", "comparison")
FORMAT_CHOICES = ("svg", "png", "both")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="+", metavar="RESULT.json|JOB_ID",
                        help="result JSON files (drawn locally) or job ids (drawn by the server)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the pictures into (created)")
    parser.add_argument("--format", choices=FORMAT_CHOICES, default="svg", help="default: %(default)s")
    parser.add_argument("--plots", default=",".join(PLOT_NAMES), type=plot_list,
                        help="comma-separated subset of " + ", ".join(PLOT_NAMES) + " (default: all)")
    parser.add_argument("--measure", choices=("params", "macs"), default="params",
                        help="the comparison chart's x axis (default: %(default)s)")


def plot_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PLOT_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown plot {', '.join(unknown) or repr(text)}; "
                                         f"choose from {', '.join(PLOT_NAMES)}")
    return names


def formats(choice: str) -> tuple[str, ...]:
    return ("svg", "png") if choice == "both" else (choice,)


def is_result_file(item: str) -> bool:
    return item.endswith(".json") or Path(item).is_file()


def plot_files(paths: list[Path], args: argparse.Namespace) -> int:
    """Draw the pictures of result files; returns the exit status."""
    from app import plots
    from app.cli.local import read_json

    results: list[dict[str, Any]] = []
    histories = []
    for path in paths:
        data = read_json(path, "result")
        try:
            histories.append(plots.read_result(data))
        except plots.PlotInputError as exc:
            print(f"error: {path} is not a netgrow result JSON (the file `netgrow grow --out` writes): {exc}",
                  file=sys.stderr)
            return 2
        results.append(data)
    written: list[Path] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for path, history in zip(paths, histories):
        for name in (name for name in args.plots if name != "comparison"):
            figure = None
            for fmt in formats(args.format):
                with plots.RENDER_LOCK:
                    figure = figure or plots.job_plot(name, history)
                    written.append(_write(args.out / f"{path.stem}-{name}.{fmt}", plots.render(figure, fmt)))
    if "comparison" in args.plots and len(paths) > 1:
        try:
            points = plots.points_from_results(results)
        except plots.PlotInputError as exc:
            index = int(exc.field.split("[")[1].split("]")[0]) if "[" in exc.field else 0
            print(f"error: {paths[index]} cannot be compared: {exc}", file=sys.stderr)
            return 2
        for fmt in formats(args.format):
            written.append(_write(args.out / f"comparison.{fmt}",
                                  plots.render_comparison(points, args.measure, fmt)))
    _report(written)
    return 0


def plot_jobs(client: Any, job_ids: list[str], args: argparse.Namespace) -> int:
    """Download the pictures of jobs from the server (``client``: an ``ApiClient``)."""
    written: list[Path] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for job_id in job_ids:
        for name in (name for name in args.plots if name != "comparison"):
            for fmt in formats(args.format):
                written.append(_write(args.out / f"{job_id}-{name}.{fmt}", client.plot(job_id, name, fmt)))
    if "comparison" in args.plots and len(job_ids) > 1:
        for fmt in formats(args.format):
            written.append(_write(args.out / f"comparison.{fmt}", client.compare_plot(job_ids, fmt, args.measure)))
    _report(written)
    return 0


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _report(written: list[Path]) -> None:
    if not written:
        print("nothing to draw: a comparison needs two or more runs", file=sys.stderr)
    for path in written:
        print(path)
