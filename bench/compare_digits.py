"""DessiLBI growth against its baselines on digits, over several seeds, and the Table 4/5 comparison.

    python bench/compare_digits.py [--seeds 0,1,2] [--jobs 2] [--with-sparse] [--only grow,l1_prune]
                                   [--out-dir bench/results] [--no-write]

Runs the shipped examples once per seed (a seed fixes the data split, the
initial weights and the batch order; every method of one seed sees the same
split), prints Table 4/5 for the first seed and a table of every run's params
and test accuracy across seeds, and rewrites the "Growth vs. baselines on
digits" section of BENCHMARKS.md with the figures of this run.

Digits' test split holds 360 images, so one image is 0.28 points of accuracy,
and growth decisions flip with the last bit of a float (a different thread
count can grow a different network): one seed decides nothing, hence the mean
and spread over seeds. The paper's claim we check (on CIFAR there): the grown
network has fewer parameters than the L1-pruned one at equal or better test
accuracy, and fewer than AutoGrow's.

Runs go to ``--jobs`` worker processes with one torch thread each (small
networks gain little from a second thread; two runs at once use both cores).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import growth  # noqa: E402
from growth.compare import compare, format_accuracy, format_count  # noqa: E402

RUNS = {
    "grow (VGG)": "digits-vgg-grow.json",
    "l1_prune": "digits-vgg-l1prune.json",
    "dense": "digits-vgg-dense.json",
    "autogrow": "digits-resnet-autogrow.json",
    "grow (ResNet)": "digits-resnet-grow.json",
}
OPTIONAL = {
    "rmda": "digits-rmda.json",
    "prox_sgd": "digits-proxsgd.json",
}
SECTION = "## Growth vs. baselines on digits"
NOTE = ("RMDA and proximal SGD keep the full architecture: their structure is the share of all-zero "
        "groups (the Group sparsity row), not a smaller parameter count.")


def run_one(label: str, example: str, seed: int) -> tuple[str, int, dict[str, Any]]:
    """One example at one seed, in a worker process with one torch thread."""
    torch.set_num_threads(1)
    spec = json.loads((ROOT / "examples" / example).read_text())
    spec["seed"] = seed
    return label, seed, growth.run(spec)


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def seed_table(results: dict[str, dict[int, dict]], seeds: list[int]) -> str:
    """Per run: method, params (mean, and the range when growth differs by seed), test accuracy per seed."""
    header = ["Run", "Method", "Params (mean)", "Params (min–max)", "Test accuracy (mean ± sd)",
              *(f"seed {s}" for s in seeds)]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for label, by_seed in results.items():
        finals = [by_seed[s]["final"] for s in seeds]
        params = [f["params"] for f in finals]
        accuracy, spread = mean_sd([f["test_accuracy"] for f in finals])
        cells = [label, by_seed[seeds[0]]["method"], format_count(round(statistics.fmean(params))),
                 f"{format_count(min(params))} – {format_count(max(params))}",
                 f"{format_accuracy(accuracy)} ± {100 * spread:.2f}",
                 *(format_accuracy(f["test_accuracy"]) for f in finals)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(results: dict[str, dict[int, dict]], seeds: list[int]) -> list[str]:
    """The paper's claims, on the means over seeds, with the per-seed count beside them."""

    def summary(label: str) -> tuple[float, float, list[dict]] | None:
        if label not in results:
            return None
        finals = [results[label][s]["final"] for s in seeds]
        return (statistics.fmean(f["params"] for f in finals),
                statistics.fmean(f["test_accuracy"] for f in finals), finals)

    lines = []
    grown, pruned = summary("grow (VGG)"), summary("l1_prune")
    if grown and pruned:
        ok = grown[0] < pruned[0] and grown[1] >= pruned[1]
        wins = sum(g["params"] < p["params"] and g["test_accuracy"] >= p["test_accuracy"]
                   for g, p in zip(grown[2], pruned[2]))
        lines.append(f"- Grown VGG vs. L1-pruned VGG (means over {len(seeds)} seeds): "
                     f"{format_count(round(grown[0]))} vs. {format_count(round(pruned[0]))} params, "
                     f"{format_accuracy(grown[1])} vs. {format_accuracy(pruned[1])} test accuracy — "
                     f"{'target met' if ok else 'target MISSED'} (fewer params at equal or better accuracy); "
                     f"met on {wins} of {len(seeds)} seeds.")
    auto = summary("autogrow")
    if auto:
        for label, run in (("Grown ResNet", summary("grow (ResNet)")), ("Grown VGG", grown)):
            if run:
                fewer = sum(g["params"] < a["params"] for g, a in zip(run[2], auto[2]))
                lines.append(f"- {label} vs. AutoGrow (means): {format_count(round(run[0]))} vs. "
                             f"{format_count(round(auto[0]))} params, {format_accuracy(run[1])} vs. "
                             f"{format_accuracy(auto[1])} test accuracy — "
                             f"{'fewer' if run[0] < auto[0] else 'MORE'} params; fewer on {fewer} of "
                             f"{len(seeds)} seeds.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated labels to run (default: all of " + ", ".join(RUNS) + ")")
    parser.add_argument("--with-sparse", action="store_true", help="also run RMDA and proximal SGD")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one process and one thread each")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    runs = dict(RUNS, **(OPTIONAL if args.with_sparse else {}))
    if args.only:
        wanted = set(args.only.split(","))
        runs = {k: v for k, v in runs.items() if k in wanted}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, dict]] = {label: {} for label in runs}
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, label, example, seed)
                   for seed in seeds for label, example in runs.items()]
        for future in futures:
            label, seed, result = future.result()
            results[label][seed] = result
            f = result["final"]
            print(f"{label:14s} seed {seed}: {f['params']:>9,} params {f['test_accuracy']:.2%} test "
                  f"{result['epochs']} epochs {result['wall_seconds']:6.1f} s", flush=True)
    total = time.perf_counter() - started

    first = seeds[0]
    for label, example in runs.items():
        out = args.out_dir / example.replace(".json", ".result.json")
        out.write_text(json.dumps(results[label][first], indent=1))
    summary = {label: {str(s): {k: by_seed[s]["final"][k] for k in ("params", "macs", "test_accuracy", "widths")}
                       for s in seeds} for label, by_seed in results.items()}
    (args.out_dir / "digits-seeds.summary.json").write_text(json.dumps(summary, indent=1))

    table = compare([results[label][first] for label in runs], labels=list(runs))
    command = "python bench/compare_digits.py" + (" --with-sparse" if args.with_sparse else "")
    for flag, value, default in (("--only", args.only, None), ("--seeds", args.seeds, "0,1,2"),
                                 ("--jobs", args.jobs, 2)):
        if value != default:
            command += f' {flag} "{value}"' if flag == "--only" else f" {flag} {value}"
    body = "\n".join([
        SECTION,
        "",
        f"Command: `{command}`",
        f"(torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.jobs} runs at a time "
        f"with 1 thread each, {total / 60:.1f} min for all {len(runs) * len(seeds)} runs). "
        "Within a seed every run uses the same digits split (16×16, 15% validation, 20% test = 360 images) "
        "and a 55-epoch budget; growth and AutoGrow stop earlier by their own rules.",
        "",
        f"Table 4/5 for seed {first} (wall times at one thread):",
        "",
        table.to_markdown(),
        "",
        f"Params and test accuracy across seeds {args.seeds}:",
        "",
        seed_table(results, seeds),
        "",
        *verdict(results, seeds),
        "",
        NOTE,
        "",
    ])
    print(body)
    if not args.no_write:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text() if path.exists() else "# Benchmarks\n\n"
        pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
        text = pattern.sub(lambda _: body.rstrip() + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + body
        path.write_text(text)
        print(f"updated {path}")


if __name__ == "__main__":
    main()
