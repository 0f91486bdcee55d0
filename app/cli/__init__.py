"""The ``netgrow`` console script.

Subcommands come from four modules, each with a ``register(subparsers)``:
``app.cli.local`` (``grow`` and comparing result files, no service needed),
``app.cli.server`` (``serve``, ``migrate``, ``keys``, ``check``, ``demo``) and
``app.cli.client`` (``submit``, ``status``, ``watch``, ``history``, ``cancel``,
``retry`` against a server), ``app.cli.transfer`` (``data upload|list``,
``download``). ``compare`` and ``plot`` are shared: result files are read
locally, job ids go to the server.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli import client, server, transfer

COMPARE_FORMATS = ("markdown", "csv", "json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netgrow", description="Grow CNNs with DessiLBI; run and query jobs.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    try:
        from app.cli import local
    except ImportError as exc:  # the engine's local commands are optional for a client-only install
        print(f"warning: local commands unavailable: {exc}", file=sys.stderr)
    else:
        local.register(subparsers)
    _register_compare(subparsers)
    _register_plot(subparsers)
    server.register(subparsers)
    client.register(subparsers)
    transfer.register(subparsers)
    return parser


def _register_compare(subparsers: argparse._SubParsersAction) -> None:
    compare = subparsers.add_parser(
        "compare", help="Table 4/5 comparison of result JSON files (local) or of job ids (--server)")
    compare.add_argument("items", nargs="+", metavar="RESULT.json|JOB_ID")
    compare.add_argument("--format", choices=COMPARE_FORMATS, default="markdown")
    compare.add_argument("--out", type=Path, help="write the table to this file instead of printing it")
    client.add_connection_arguments(compare)
    compare.set_defaults(handler=compare_command)


def _register_plot(subparsers: argparse._SubParsersAction) -> None:
    from app.cli import plot

    parser = subparsers.add_parser(
        "plot", help="width timeline, selection heatmap, training curves and comparison chart of result JSON "
                     "files (drawn locally) or of job ids (drawn by --server)")
    plot.add_arguments(parser)
    client.add_connection_arguments(parser)
    parser.set_defaults(handler=plot_command)


def plot_command(args: argparse.Namespace) -> int:
    from app.cli import plot

    files = [item for item in args.items if plot.is_result_file(item)]
    if files and len(files) != len(args.items):
        print("error: give either result files or job ids, not both", file=sys.stderr)
        return 2
    if files:
        return plot.plot_files([Path(item) for item in files], args)
    return client.plot_jobs(args)


def compare_command(args: argparse.Namespace) -> int:
    files = [item for item in args.items if item.endswith(".json") or Path(item).is_file()]
    if files and len(files) != len(args.items):
        print("error: give either result files or job ids, not both", file=sys.stderr)
        return 2
    if files:
        from app.cli.local import compare_files

        return compare_files([Path(item) for item in files], args.format, args.out)
    return client.compare_jobs(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
