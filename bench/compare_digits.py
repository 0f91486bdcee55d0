"""DessiLBI growth against its baselines on digits, in one go, and the Table 4/5 comparison.

    python bench/compare_digits.py [--only grow,l1_prune] [--out-dir bench/results] [--no-write]

Runs the shipped examples (same data split, same 55-epoch budget per run),
prints the comparison, and rewrites the "Growth vs. baselines on digits"
section of BENCHMARKS.md with the figures of this run. The paper's claim we
check (on CIFAR there): the grown network has fewer parameters than the
L1-pruned one at equal or better test accuracy, and fewer than AutoGrow's.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import growth  # noqa: E402
from growth.compare import compare  # noqa: E402

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
        "groups (`group_sparsity` in their result JSON), not a smaller parameter count.")


def verdict(results: dict[str, dict]) -> list[str]:
    lines = []
    grown = results.get("grow (VGG)")
    pruned = results.get("l1_prune")
    if grown and pruned:
        g, p = grown["final"], pruned["final"]
        ok = g["params"] < p["params"] and g["test_accuracy"] >= p["test_accuracy"]
        lines.append(f"- Grown VGG vs. L1-pruned VGG: {g['params']:,} vs. {p['params']:,} params, "
                     f"{g['test_accuracy']:.2%} vs. {p['test_accuracy']:.2%} test accuracy — "
                     f"{'target met' if ok else 'target MISSED'} (fewer params at equal or better accuracy).")
    grown_res = results.get("grow (ResNet)")
    auto = results.get("autogrow")
    if auto:
        for label, run in (("Grown ResNet", grown_res), ("Grown VGG", grown)):
            if run:
                a, g = auto["final"], run["final"]
                ok = g["params"] < a["params"]
                lines.append(f"- {label} vs. AutoGrow: {g['params']:,} vs. {a['params']:,} params, "
                             f"{g['test_accuracy']:.2%} vs. {a['test_accuracy']:.2%} test accuracy — "
                             f"{'fewer params' if ok else 'MORE params'}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated labels to run (default: all of " + ", ".join(RUNS) + ")")
    parser.add_argument("--with-sparse", action="store_true", help="also run RMDA and proximal SGD")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()

    runs = dict(RUNS, **(OPTIONAL if args.with_sparse else {}))
    if args.only:
        wanted = set(args.only.split(","))
        runs = {k: v for k, v in runs.items() if k in wanted}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    started = time.perf_counter()
    for label, example in runs.items():
        spec = json.loads((ROOT / "examples" / example).read_text())
        t0 = time.perf_counter()
        result = growth.run(spec)
        results[label] = result
        out = args.out_dir / example.replace(".json", ".result.json")
        out.write_text(json.dumps(result, indent=1))
        f = result["final"]
        print(f"{label:14s} {f['params']:>9,} params {f['test_accuracy']:.2%} test "
              f"{result['epochs']} epochs {time.perf_counter() - t0:6.1f} s", flush=True)
    total = time.perf_counter() - started

    table = compare(list(results.values()), labels=list(results))
    checks = verdict(results)
    body = "\n".join([
        SECTION,
        "",
        "Command: `python bench/compare_digits.py" + (" --with-sparse" if args.with_sparse else "") + "`",
        f"(torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {total / 60:.1f} min for all runs). "
        "Every run uses the same digits split (seed 0, 16×16, 15% validation, 20% test) and a 55-epoch budget.",
        "",
        table.to_markdown(),
        "",
        *checks,
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
