"""DessiLBI growth against its baselines over several seeds: Table 4/5, mean ± sd, and the growth timeline.

    python bench/compare.py --dataset digits|fashion_mnist [--seeds 0,1,2] [--jobs 2] [--with-optional]
                            [--only "grow (VGG),l1_prune"] [--out-dir bench/results] [--no-write]

Runs a data set's shipped examples once per seed (a seed fixes the data split,
the initial weights and the batch order; every method of one seed sees the
same split), prints Table 4/5 for the first seed and the mean ± sd over seeds
of params, MACs, test accuracy and wall time, checks the paper's claims as
targets, and rewrites the data set's section of BENCHMARKS.md with the figures
of this run. For Fashion-MNIST the section also holds the seed-0 grown VGG's
width timeline (every unit, every epoch), each unit's ratio at each growth
check, and how uniform the grown widths are: when every unit triggers at every
check, growth is uniform widening and its per-layer configuration says nothing.

Runs go to ``--jobs`` worker processes with one torch thread each (small
networks gain little from a second thread; two runs at once use both cores),
the longest runs first so that the last ones to finish are short.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import growth  # noqa: E402
from growth.compare import compare, format_accuracy, format_count  # noqa: E402


@dataclass(frozen=True)
class Run:
    """One column of the comparison: a shipped example, optionally with fields overridden."""

    example: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def spec(self, seed: int) -> dict[str, Any]:
        spec = json.loads((ROOT / "examples" / self.example).read_text())
        for section, values in self.overrides.items():
            spec[section] = {**spec.get(section, {}), **values}
        spec["seed"] = seed
        return spec

    def result_name(self) -> str:
        """``fashion-vgg-grow.result.json``; an overridden run adds its values: ``…-plateau.result.json``."""
        suffix = "".join(f"-{value}" for values in self.overrides.values() for value in values.values())
        return self.example.removesuffix(".json") + suffix + ".result.json"


@dataclass(frozen=True)
class Benchmark:
    section: str
    runs: dict[str, Run]  # label → run, the longest first (they are scheduled in this order)
    optional: dict[str, Run]  # added by --with-optional
    description: str
    timeline: bool  # the Fashion-MNIST extras: timeline, ratios, uniformity, stop rules, targets
    time_budget_minutes: float | None = None


BENCHMARKS = {
    "digits": Benchmark(
        section="## Growth vs. baselines on digits",
        runs={
            "dessilbi_prune": Run("digits-vgg-dessilbi-prune.json"),
            "l1_prune": Run("digits-vgg-l1prune.json"),
            "dense": Run("digits-vgg-dense.json"),
            "autogrow": Run("digits-resnet-autogrow.json"),
            "grow (ResNet)": Run("digits-resnet-grow.json"),
            "grow (VGG)": Run("digits-vgg-grow.json"),
        },
        optional={"rmda": Run("digits-rmda.json"), "prox_sgd": Run("digits-proxsgd.json")},
        description=("Within a seed every run uses the same digits split (16×16, 15% validation, 20% test = "
                     "360 images) and a 55-epoch budget; growth and AutoGrow stop earlier by their own rules."),
        timeline=False,
    ),
    "fashion_mnist": Benchmark(
        section="## Growth vs. baselines on Fashion-MNIST",
        runs={
            "dessilbi_prune": Run("fashion-vgg-dessilbi-prune.json"),
            "l1_prune": Run("fashion-vgg-l1prune.json"),
            "rmda": Run("fashion-rmda.json"),
            "autogrow": Run("fashion-resnet-autogrow.json"),
            "dense": Run("fashion-vgg-dense.json"),
            "grow (ResNet)": Run("fashion-resnet-grow.json"),
            "grow (VGG, plateau)": Run("fashion-vgg-grow.json", {"growth": {"stop": "plateau"}}),
            "grow (VGG)": Run("fashion-vgg-grow.json"),
        },
        # The growth example's λ = 1.5 lets Γ select every filter of the dense VGG within its 15
        # epochs, so that column removes nothing; λ = 2 is where Γ leaves filters out (on the
        # validation split: bench/growth_trials.py examples/fashion-vgg-dessilbi-prune.json).
        # RMDA with the digits example's lr 0.5 ended at 67.8 % validation accuracy at seed 0 (84.7 % before
        # its lr milestone); lr 0.1 ended at 79.2 % (bench/growth_trials.py examples/fashion-rmda.json).
        optional={"dessilbi_prune (λ = 2)": Run("fashion-vgg-dessilbi-prune.json", {"optimizer": {"lam": 2.0}}),
                  "rmda (lr 0.1)": Run("fashion-rmda.json", {"train": {"lr": 0.1}})},
        description=("Within a seed every run uses the same stratified training subset of Fashion-MNIST's "
                     "60,000 training images (its validation split carved out of it), at 28×28, and is "
                     "tested on all 10,000 test images."),
        timeline=True,
        time_budget_minutes=90,
    ),
}

GROWN_VGG, PLATEAU_VGG, GROWN_RESNET = "grow (VGG)", "grow (VGG, plateau)", "grow (ResNet)"
SPARSE_NOTE = ("RMDA and proximal SGD keep the full architecture: their structure is the share of all-zero "
               "groups (the Group sparsity row), not a smaller parameter count.")


def run_one(label: str, run: Run, seed: int) -> tuple[str, int, dict[str, Any]]:
    """One run at one seed, in a worker process with one torch thread."""
    torch.set_num_threads(1)
    return label, seed, growth.run(run.spec(seed))


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def finals(results: dict[str, dict[int, dict]], label: str, seeds: list[int]) -> list[dict[str, Any]]:
    return [results[label][s]["final"] for s in seeds]


def seed_table(results: dict[str, dict[int, dict]], seeds: list[int]) -> str:
    """Per run: params (mean, and the range when growth differs by seed), test accuracy per seed."""
    header = ["Run", "Method", "Params (mean)", "Params (min–max)", "Test accuracy (mean ± sd)",
              *(f"seed {s}" for s in seeds)]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for label, by_seed in results.items():
        runs = finals(results, label, seeds)
        params = [f["params"] for f in runs]
        accuracy, spread = mean_sd([f["test_accuracy"] for f in runs])
        cells = [label, by_seed[seeds[0]]["method"], format_count(round(statistics.fmean(params))),
                 f"{format_count(min(params))} – {format_count(max(params))}",
                 f"{format_accuracy(accuracy)} ± {100 * spread:.2f}",
                 *(format_accuracy(f["test_accuracy"]) for f in runs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_sd_table(results: dict[str, dict[int, dict]], seeds: list[int]) -> str:
    """Params, MACs, test accuracy and wall time as mean ± sd over seeds, plus Γ-support accuracy where reported."""
    header = ["Run", "Method", "Params", "MACs", "Test accuracy", "Wall time (s)", "Γ-support test accuracy"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for label, by_seed in results.items():
        runs = [by_seed[s] for s in seeds]
        params = mean_sd([r["final"]["params"] for r in runs])
        macs = mean_sd([r["final"]["macs"] for r in runs])
        accuracy = mean_sd([r["final"]["test_accuracy"] for r in runs])
        wall = mean_sd([r["wall_seconds"] for r in runs])
        support = [r["final"].get("support_test_accuracy") for r in runs]
        support_cell = "–"
        if all(s is not None for s in support):
            m, sd = mean_sd(support)
            support_cell = f"{format_accuracy(m)} ± {100 * sd:.2f}"
        lines.append("| " + " | ".join([
            label, runs[0]["method"],
            f"{format_count(round(params[0]))} ± {format_count(round(params[1]))}",
            f"{format_count(round(macs[0]))} ± {format_count(round(macs[1]))}",
            f"{format_accuracy(accuracy[0])} ± {100 * accuracy[1]:.2f}",
            f"{wall[0]:.0f} ± {wall[1]:.0f}", support_cell]) + " |")
    return "\n".join(lines)


def verdict(results: dict[str, dict[int, dict]], seeds: list[int]) -> list[str]:
    """Digits: the paper's claims on the means over seeds, with the per-seed count beside them."""

    def summary(label: str) -> tuple[float, float, list[dict]] | None:
        if label not in results:
            return None
        runs = finals(results, label, seeds)
        return statistics.fmean(f["params"] for f in runs), statistics.fmean(f["test_accuracy"] for f in runs), runs

    lines = []
    grown, pruned = summary(GROWN_VGG), summary("l1_prune")
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
        for label, run in (("Grown ResNet", summary(GROWN_RESNET)), ("Grown VGG", grown)):
            if run:
                fewer = sum(g["params"] < a["params"] for g, a in zip(run[2], auto[2]))
                lines.append(f"- {label} vs. AutoGrow (means): {format_count(round(run[0]))} vs. "
                             f"{format_count(round(auto[0]))} params, {format_accuracy(run[1])} vs. "
                             f"{format_accuracy(auto[1])} test accuracy — "
                             f"{'fewer' if run[0] < auto[0] else 'MORE'} params; fewer on {fewer} of "
                             f"{len(seeds)} seeds.")
    return lines


def targets(results: dict[str, dict[int, dict]], seeds: list[int]) -> list[str]:
    """Issue 10's three targets on the means over seeds, each stated as met or missed."""

    def mean(label: str, key: str) -> float | None:
        if label not in results:
            return None
        if key == "wall_seconds":
            return statistics.fmean(results[label][s]["wall_seconds"] for s in seeds)
        return statistics.fmean(f[key] for f in finals(results, label, seeds))

    def met(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines = []
    grown_p, grown_a = mean(GROWN_VGG, "params"), mean(GROWN_VGG, "test_accuracy")
    l1_p, l1_a = mean("l1_prune", "params"), mean("l1_prune", "test_accuracy")
    if None not in (grown_p, l1_p):
        ok = grown_p <= 0.5 * l1_p and grown_a >= l1_a - 0.003
        lines.append(f"- Grown VGG params ≤ 0.5 × L1-pruned VGG's at test accuracy ≥ L1-pruned − 0.3 pt: "
                     f"{format_count(round(grown_p))} vs. {format_count(round(l1_p))} "
                     f"({grown_p / l1_p:.2f}×), {format_accuracy(grown_a)} vs. {format_accuracy(l1_a)} "
                     f"({100 * (grown_a - l1_a):+.2f} pt) — {met(ok)}.")
    res_p, res_a = mean(GROWN_RESNET, "params"), mean(GROWN_RESNET, "test_accuracy")
    auto_p, auto_a = mean("autogrow", "params"), mean("autogrow", "test_accuracy")
    if None not in (res_p, auto_p):
        ok = res_p < auto_p and res_a >= auto_a - 0.003
        lines.append(f"- Grown ResNet params < AutoGrow's at test accuracy ≥ AutoGrow's − 0.3 pt: "
                     f"{format_count(round(res_p))} vs. {format_count(round(auto_p))} "
                     f"({res_p / auto_p:.2f}×), {format_accuracy(res_a)} vs. {format_accuracy(auto_a)} "
                     f"({100 * (res_a - auto_a):+.2f} pt) — {met(ok)}.")
    grow_t, l1_t = mean(GROWN_VGG, "wall_seconds"), mean("l1_prune", "wall_seconds")
    if None not in (grow_t, l1_t):
        lines.append(f"- A growth job's wall time ≤ 0.5 × the L1-prune pipeline's (dense training + pruning + "
                     f"fine-tuning, one job): {grow_t:.0f} s vs. {l1_t:.0f} s ({grow_t / l1_t:.2f}×) — "
                     f"{met(grow_t <= 0.5 * l1_t)}.")
    return lines


def width_timeline(result: dict[str, Any]) -> str:
    """Every unit's width at the end of every epoch (after that epoch's growth), with the phase."""
    units = [u["name"] for u in result["history"][0]["units"]]
    lines = ["| Epoch | Phase | " + " | ".join(units) + " | Val accuracy |",
             "|---:|---|" + "---:|" * (len(units) + 1)]
    for row in result["history"]:
        widths = {u["name"]: u["width"] + u.get("grew", 0) for u in row["units"]}
        lines.append(f"| {row['epoch']} | {row['phase']} | " + " | ".join(str(widths[u]) for u in units)
                     + f" | {format_accuracy(row['val_accuracy'])} |")
    return "\n".join(lines)


def growth_checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The history rows of the epochs that ended with a growth check (every J-th growth epoch)."""
    every = result["spec"]["growth"]["every"]
    return [row for row in result["history"] if row["phase"] == "grow" and (row["epoch"] + 1) % every == 0]


def ratio_table(result: dict[str, Any]) -> str:
    """Each unit's ratio (selected / width) at each growth check; ✚ marks a unit that was widened."""
    checks = growth_checks(result)
    units = [u["name"] for u in result["history"][0]["units"]]
    lines = ["| Check after epoch | " + " | ".join(units) + " |", "|---:|" + "---:|" * len(units)]
    for row in checks:
        cells = {u["name"]: f"{u['ratio']:.2f} ({u['width']}{' ✚' if u.get('grew') else ''})" for u in row["units"]}
        lines.append(f"| {row['epoch']} | " + " | ".join(cells[u] for u in units) + " |")
    return "\n".join(lines)


def uniformity(results: dict[str, dict[int, dict]], label: str, seeds: list[int]) -> list[str]:
    """How uniform growth was: lockstep checks (every unit widened together) and the spread of final widths."""
    lines = []
    for seed in seeds:
        result = results[label][seed]
        checks = growth_checks(result)
        grew = [sum(1 for u in row["units"] if u.get("grew")) for row in checks]
        n_units = len(result["history"][0]["units"])
        widths = list(result["final"]["widths"].values())
        spread = statistics.pstdev(widths) / statistics.fmean(widths)
        lines.append(f"- {label}, seed {seed}: final widths {widths} ({len(set(widths))} distinct, "
                     f"coefficient of variation {spread:.2f}); units widened per check {grew} of {n_units} — "
                     f"{sum(g == n_units for g in grew)} of {len(grew)} checks widened every unit, "
                     f"{sum(0 < g < n_units for g in grew)} widened only some.")
    return lines


def stop_rules(results: dict[str, dict[int, dict]], seeds: list[int]) -> list[str]:
    """The two stop rules side by side: the epoch growth stopped at and the network each grew."""
    lines = []
    for label in (GROWN_VGG, PLATEAU_VGG):
        if label not in results:
            continue
        for seed in seeds:
            r = results[label][seed]
            grow_epochs = sum(1 for row in r["history"] if row["phase"] == "grow")
            lines.append(f"- {label} (growth.stop = {r['spec']['growth'].get('stop', 'no_trigger')}), seed {seed}: "
                         f"grew for {grow_epochs} epochs, {format_count(r['final']['params'])} params, "
                         f"{format_accuracy(r['final']['test_accuracy'])} test accuracy, widths "
                         f"{list(r['final']['widths'].values())}.")
    return lines


def command_line(args: argparse.Namespace) -> str:
    command = f"python bench/compare.py --dataset {args.dataset}" + (" --with-optional" if args.with_optional else "")
    for flag, value, default in (("--only", args.only, None), ("--seeds", args.seeds, "0,1,2"),
                                 ("--jobs", args.jobs, 2)):
        if value != default:
            command += f' {flag} "{value}"' if flag == "--only" else f" {flag} {value}"
    return command


def section_title(bench: Benchmark, args: argparse.Namespace) -> str:
    """The data set's section, or one of its own for a partial run (--only), which never replaces the full one."""
    return bench.section if not args.only else f"{bench.section}: only {args.only}"


def section(bench: Benchmark, args: argparse.Namespace, results: dict[str, dict[int, dict]],
            seeds: list[int], total_seconds: float) -> str:
    first = seeds[0]
    labels = list(results)
    table = compare([results[label][first] for label in labels], labels=labels)
    budget = ""
    if bench.time_budget_minutes is not None:
        within = total_seconds / 60 <= bench.time_budget_minutes
        budget = (f" The {bench.time_budget_minutes:.0f}-minute budget for the whole run is "
                  f"{'met' if within else 'MISSED'}.")
    parts = [
        section_title(bench, args), "",
        f"Command: `{command_line(args)}`",
        f"(torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.jobs} runs at a time "
        f"with 1 thread each, {total_seconds / 60:.1f} min for all {len(labels) * len(seeds)} runs).{budget} "
        + bench.description, "",
        f"Table 4/5 for seed {first} (wall times at one thread):", "",
        table.to_markdown(), "",
    ]
    if bench.timeline:
        parts += [f"Mean ± sd over seeds {args.seeds}:", "", mean_sd_table(results, seeds), "",
                  f"Test accuracy per seed:", "", seed_table(results, seeds), "",
                  *(["Targets (means over seeds):", "", *targets(results, seeds), ""] if targets(results, seeds) else [])]
        if GROWN_VGG in results:
            parts += [f"Width timeline of the seed-{first} grown VGG (widths after each epoch's growth):", "",
                      width_timeline(results[GROWN_VGG][first]), "",
                      f"Each unit's ratio (Γ-selected filters / filters) at each growth check, seed {first} "
                      "(width in brackets, ✚ = widened):", "",
                      ratio_table(results[GROWN_VGG][first]), "",
                      "How uniform the growth was:", "",
                      *uniformity(results, GROWN_VGG, seeds),
                      *(uniformity(results, PLATEAU_VGG, seeds) if PLATEAU_VGG in results else []), "",
                      "Stop rules:", "", *stop_rules(results, seeds), ""]
    else:
        parts += [f"Params and test accuracy across seeds {args.seeds}:", "", seed_table(results, seeds), "",
                  *verdict(results, seeds), ""]
    if any(label in results for label in ("rmda", "prox_sgd")):
        parts += [SPARSE_NOTE, ""]
    return "\n".join(parts)


def write_section(body: str, title: str) -> Path:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile("^" + re.escape(title) + r"$.*?(?=\n## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body.rstrip() + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + body
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(BENCHMARKS), default="digits")
    parser.add_argument("--only", help="comma-separated run labels (default: all of the data set's runs)")
    parser.add_argument("--with-optional", action="store_true",
                        help="also the data set's optional runs (digits: RMDA and proximal SGD; "
                             "fashion_mnist: dessilbi_prune at λ = 2, RMDA at lr 0.1)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one process and one thread each")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)

    bench = BENCHMARKS[args.dataset]
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = dict(bench.runs, **(bench.optional if args.with_optional else {}))
    if args.only:
        wanted = args.only.split(",")
        unknown = [label for label in wanted if label not in runs]
        if unknown:
            parser.error(f"--only: unknown run(s) {unknown}; choose from {list(runs)}")
        runs = {label: run for label, run in runs.items() if label in wanted}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # Table columns read grown networks first, then the baselines, whatever order the runs were scheduled in.
    order = sorted(runs, key=lambda label: (not label.startswith("grow"), label != GROWN_VGG))
    results: dict[str, dict[int, dict]] = {label: {} for label in order}
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, label, run, seed) for label, run in runs.items() for seed in seeds]
        for future in futures:
            label, seed, result = future.result()
            results[label][seed] = result
            if seed == seeds[0]:
                (args.out_dir / runs[label].result_name()).write_text(json.dumps(result, indent=1))
            f = result["final"]
            print(f"{label:20s} seed {seed}: {f['params']:>9,} params {f['test_accuracy']:.2%} test "
                  f"{result['epochs']} epochs {result['wall_seconds']:6.1f} s "
                  f"({(time.perf_counter() - started) / 60:.1f} min in)", flush=True)
    total = time.perf_counter() - started

    summary = {label: {str(s): {k: by_seed[s]["final"][k] for k in ("params", "macs", "test_accuracy", "widths")}
                       | {"wall_seconds": by_seed[s]["wall_seconds"]} for s in seeds}
               for label, by_seed in results.items()}
    (args.out_dir / f"{args.dataset}-seeds.summary.json").write_text(json.dumps(summary, indent=1))
    body = section(bench, args, results, seeds, total)
    print(body)
    if not args.no_write:
        print(f"updated {write_section(body, section_title(bench, args))}")


if __name__ == "__main__":
    main()
