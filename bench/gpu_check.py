"""One device check for a GPU host: the CUDA paths' correctness, speed and memory in one table.

Usage: ``python bench/gpu_check.py [--json bench/results/gpu_check.json]``

On a machine without CUDA it prints "no CUDA device" and exits 0, so it is
always runnable. On a GPU (about 2–4 minutes, budget ≤ 5) it prints one
Markdown table and writes the same rows as JSON:

1. ``step vs reference``: a DessiLBI step on CUDA, fused (Triton) and foreach,
   against the float64 reference path on the CPU (conv weights with odd
   filter sizes, a zero filter and one longer than a kernel block, linear
   weights, biases; momentum and weight decay on; 5 steps). Figure: the largest
   error relative to the tensor's scale; goal ≤ 1e-5 (float32 rounding).
2. ``widen VGG16``: every unit of a VGG16-BN widened in place on CUDA while
   DessiLBI holds stepped state (channels_last weights); checks kept entries,
   zero new state, dtypes and strides; figure: milliseconds.
3. ``step ratio``: DessiLBI step (fused, and foreach) ÷ ``SGD(momentum=0.9,
   fused=True)`` step on VGG16-BN and ResNet-56 parameter shapes; goal for the
   fused step on VGG16 ≤ 1.5×.
4. ``iteration ratio``: forward + backward + step at CIFAR shape (3×32×32, batch
   128, synthetic data) on VGG16-BN, DessiLBI (default = fused) ÷ SGD (fused), in
   fp32 and bf16 autocast; goal ≤ 1.05×.
5. ``growth job``: a short growth job end to end on CUDA (synthetic data, grows
   at least once); figure: seconds.

Every row also reports the peak GPU memory allocated while it ran. Ratios are
medians of back-to-back pairs (see bench/bench_optim.py).

``--device cpu --smoke`` runs every row at toy sizes on the CPU, to check the
script itself; the fused rows need ``TRITON_INTERPRET=1`` there and are marked
skipped without it. Its figures mean nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import growth  # noqa: E402
from bench_optim import Timings, interleaved  # noqa: E402
from growth import surgery  # noqa: E402
from growth.methods.grow import grown_width  # noqa: E402
from growth.models import GrowableNet, build_model  # noqa: E402
from growth.optim.dessilbi import DessiLBI  # noqa: E402

VGG16: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
RESNET56_STAGES = [{"width": w, "stride": s, "blocks": [w] * 9} for w, s in ((16, 1), (32, 2), (64, 2))]
GOAL_ERROR = 1e-5
GOAL_FUSED_STEP = 1.5
GOAL_ITERATION = 1.05
DEFAULT_JSON = ROOT / "bench" / "results" / "gpu_check.json"


@dataclass
class Row:
    check: str
    figure: str = ""
    goal: str = ""
    ok: bool | None = None  # None: no pass/fail (a measurement without a goal, or skipped)
    peak_mib: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Config:
    device: torch.device
    smoke: bool
    fused_available: bool
    step_repeats: int
    iteration_repeats: int
    batch_size: int


# -- helpers --------------------------------------------------------------------------------------


def fused_available(device: torch.device) -> tuple[bool, str]:
    """Whether DessiLBI(fused=True) can run here, and why not."""
    try:
        from growth.optim import _fused_dessilbi as fused
    except ImportError as err:
        return False, f"triton does not import ({err})"
    probe = torch.zeros(1, device=device)
    if not fused.fused_supported([probe]):
        return False, "the fused kernels run on CUDA, or on the CPU under TRITON_INTERPRET=1"
    return True, ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def vgg16(device: torch.device, smoke: bool, channels_last: bool = False) -> GrowableNet:
    layers = [w // 16 if isinstance(w, int) else w for w in VGG16] if smoke else VGG16
    spec = {"family": "vgg", "in_channels": 3, "num_classes": 10, "layers": layers, "classifier": [],
            "batch_norm": True}
    model = build_model(spec, generator=torch.Generator().manual_seed(0)).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def resnet56(device: torch.device, smoke: bool) -> GrowableNet:
    stages = ([{"width": 4, "stride": 1, "blocks": [4]}, {"width": 8, "stride": 2, "blocks": [8]}]
              if smoke else RESNET56_STAGES)
    spec = {"family": "resnet", "in_channels": 3, "num_classes": 10, "stem": 4 if smoke else 16,
            "stages": stages}
    return build_model(spec, generator=torch.Generator().manual_seed(0)).to(device)


def param_groups(model: GrowableNet) -> list[dict[str, Any]]:
    return [{k: v for k, v in g.items() if k in ("params", "structural")} for g in model.param_groups()]


def make_optimizer(name: str, model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, fused=True)
    return DessiLBI(param_groups(model), lr=lr, momentum=0.9, weight_decay=weight_decay,
                    fused={"dessilbi_fused": True, "dessilbi_foreach": False, "dessilbi": None}[name],
                    foreach=None if name != "dessilbi_foreach" else True)


def fill_grads(model: nn.Module, seed: int) -> None:
    """Fixed random gradients, each in its parameter's memory format (as autograd lays them out)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        grad = torch.randn(p.shape, generator=g) * 1e-2
        p.grad = torch.empty_like(p, memory_format=torch.preserve_format).copy_(grad)


def measured(row: Row, device: torch.device, body: Callable[[Row], None]) -> Row:
    """Run ``body`` with the peak-memory counter reset; an exception fails the row, not the script."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        body(row)
    except Exception as err:  # noqa: BLE001 - one broken check must not hide the others
        row.ok = False
        row.error = f"{type(err).__name__}: {err}"
        row.detail["traceback"] = traceback.format_exc(limit=8)
    if device.type == "cuda":
        row.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    return row


# -- 1. correctness -------------------------------------------------------------------------------

CHECK_SHAPES = [((7, 3, 3, 3), True), ((64, 64, 3, 3), True), ((5, 5, 3, 2), True), ((2, 9000, 1, 1), True),
                ((10, 64), True), ((64,), True), ((10,), False), ((10, 7), False)]


def check_step(cfg: Config, row: Row) -> None:
    hyper = {"lr": 0.3, "kappa": 0.9, "nu": 2.0, "lam": 0.5, "momentum": 0.9, "weight_decay": 1e-2}
    g = torch.Generator().manual_seed(0)
    w0 = []
    for shape, _ in CHECK_SHAPES:
        t = torch.randn(shape, generator=g, dtype=torch.float64)
        if len(shape) == 4:
            t[1] = 0.0
        w0.append(t)
    grads = [[torch.randn(shape, generator=g, dtype=torch.float64) for shape, _ in CHECK_SHAPES] for _ in range(5)]

    def run(device: torch.device, dtype: torch.dtype, **options: Any) -> list[dict[str, torch.Tensor]]:
        params = [nn.Parameter(w.to(device, dtype, copy=True)) for w in w0]
        lifted = [p for p, (_, lift) in zip(params, CHECK_SHAPES, strict=True) if lift]
        rest = [p for p, (_, lift) in zip(params, CHECK_SHAPES, strict=True) if not lift]
        optimizer = DessiLBI([{"params": lifted}, {"params": rest, "structural": False}], **hyper, **options)
        for step_grads in grads:
            for p, grad in zip(params, step_grads, strict=True):
                p.grad = grad.to(device, dtype, copy=True)
            optimizer.step()
        return [{"w": p.detach().cpu().double(), **{k: v.cpu().double() for k, v in optimizer.state[p].items()}}
                for p in params]

    reference = run(torch.device("cpu"), torch.float64, foreach=False, fused=False)
    paths = {"foreach": {"foreach": True, "fused": False}}
    if cfg.fused_available:
        paths["fused"] = {"fused": True}
    else:
        row.detail["fused"] = "skipped: " + fused_available(cfg.device)[1]
    worst = 0.0
    for name, options in paths.items():
        got = run(cfg.device, torch.float32, **options)
        errors = []
        for want, have in zip(reference, got, strict=True):
            assert set(want) == set(have), f"{name}: state keys {sorted(have)} != {sorted(want)}"
            for key in want:
                scale = max(1.0, float(want[key].abs().max()))
                errors.append(float((want[key] - have[key]).abs().max()) / scale)
        row.detail[f"{name}_max_rel_error"] = max(errors)
        worst = max(worst, max(errors))
    selected = sum(int((r["gamma"] != 0).any()) for r in reference if "gamma" in r)
    row.detail["lifted_tensors_with_support"] = selected
    row.figure = f"max error {worst:.1e} ({', '.join(paths)})"
    row.goal = f"≤ {GOAL_ERROR:g}"
    row.ok = worst <= GOAL_ERROR and selected >= 3 and (cfg.fused_available or cfg.smoke)


# -- 2. widening ----------------------------------------------------------------------------------


def check_widen(cfg: Config, row: Row) -> None:
    model = vgg16(cfg.device, cfg.smoke, channels_last=True)
    optimizer = make_optimizer("dessilbi", model)
    fill_grads(model, 1)
    optimizer.step()
    before = {id(p): (p.detach().clone(), {k: v.clone() for k, v in optimizer.state[p].items()})
              for p in model.parameters()}
    layout = {id(p): (p.dtype, p.is_contiguous(memory_format=torch.channels_last) if p.ndim == 4 else None)
              for p in model.parameters()}
    widths = {u.name: grown_width(u.width, add=8, factor=1.1, max_width=4096) for u in model.units()}
    sync(cfg.device)
    start = time.perf_counter()
    surgery.widen_units(model, optimizer, widths, generator=torch.Generator().manual_seed(2))
    sync(cfg.device)
    row.detail["ms"] = (time.perf_counter() - start) * 1e3
    problems = []
    for name, p in model.named_parameters():
        old, old_state = before[id(p)]
        dtype, channels_last = layout[id(p)]
        kept = tuple(slice(0, n) for n in old.shape)
        if not torch.equal(p.detach()[kept], old):
            problems.append(f"{name}: kept weights changed")
        if p.dtype != dtype or (channels_last and not p.is_contiguous(memory_format=torch.channels_last)):
            problems.append(f"{name}: dtype or memory format lost")
        for key, value in optimizer.state[p].items():
            if value.ndim == 0:
                continue
            if value.shape != p.shape or value.dtype != old_state[key].dtype or value.stride() != p.stride():
                problems.append(f"{name}.{key}: shape/dtype/stride does not follow the parameter")
                continue
            if not torch.equal(value[kept], old_state[key]):
                problems.append(f"{name}.{key}: kept state changed")
            new_entries = value.clone()
            new_entries[kept] = 0
            if new_entries.any():
                problems.append(f"{name}.{key}: new entries are not zero")
    fill_grads(model, 3)
    optimizer.step()  # the widened state steps (fused on CUDA)
    row.detail["problems"] = problems[:10]
    row.figure = f"{row.detail['ms']:.1f} ms, {len(widths)} units"
    row.goal = "state kept, ≤ 50 ms"
    row.ok = not problems and (cfg.smoke or row.detail["ms"] <= 50.0)


# -- 3. step ratio --------------------------------------------------------------------------------


def check_step_ratio(cfg: Config, row: Row, family: str) -> None:
    base = vgg16(cfg.device, cfg.smoke) if family == "vgg16" else resnet56(cfg.device, cfg.smoke)
    fill_grads(base, 1)
    # (the interpreter's timings would mean nothing: a smoke run on the CPU only times foreach)
    timed_fused = cfg.fused_available and cfg.device.type == "cuda"
    names = ["sgd", "dessilbi_foreach"] + (["dessilbi_fused"] if timed_fused else [])
    fns = {}
    for name in names:
        model = copy.deepcopy(base)
        for p, q in zip(model.parameters(), base.parameters(), strict=True):
            p.grad = q.grad.clone()
        fns[name] = make_optimizer(name, model).step
    timings: Timings = interleaved(fns, cfg.device, repeats=cfg.step_repeats, warmup=3)
    row.detail["params_m"] = sum(p.numel() for p in base.parameters()) / 1e6
    row.detail["sgd_ms"] = timings.median("sgd") * 1e3
    parts = []
    for name in names[1:]:
        row.detail[f"{name}_ms"] = timings.median(name) * 1e3
        row.detail[f"{name}_ratio"] = timings.ratio(name, "sgd")
        parts.append(f"{name.removeprefix('dessilbi_')} {timings.ratio(name, 'sgd'):.2f}×")
    row.figure = ", ".join(parts)
    if family == "vgg16":
        row.goal = f"fused ≤ {GOAL_FUSED_STEP}×"
        row.ok = None if not timed_fused else row.detail["dessilbi_fused_ratio"] <= GOAL_FUSED_STEP


# -- 4. iteration ratio ---------------------------------------------------------------------------


def check_iteration(cfg: Config, row: Row, precision: str) -> None:
    from growth.training import Precision

    g = torch.Generator().manual_seed(2)
    x = torch.randn(cfg.batch_size, 3, 32, 32, generator=g).to(cfg.device)
    y = torch.randint(0, 10, (cfg.batch_size,), generator=g).to(cfg.device)
    base = vgg16(cfg.device, cfg.smoke)
    fns = {}
    for name in ("sgd", "dessilbi"):
        model = copy.deepcopy(base).train()
        optimizer = make_optimizer(name, model)
        amp = Precision(precision, cfg.device)

        def iteration(model: nn.Module = model, optimizer: torch.optim.Optimizer = optimizer,
                      amp: Precision = amp) -> None:
            optimizer.zero_grad(set_to_none=True)
            with amp.autocast():
                loss = nn.functional.cross_entropy(model(x), y)
            amp.backward_and_step(loss, optimizer)

        fns[name] = iteration
    from growth.optim._triton import default_to_fused

    row.detail["dessilbi_path"] = "fused" if default_to_fused(list(base.parameters())) else "foreach"
    timings = interleaved(fns, cfg.device, repeats=cfg.iteration_repeats, warmup=3)
    ratio = timings.ratio("dessilbi", "sgd")
    row.detail.update(sgd_ms=timings.median("sgd") * 1e3, dessilbi_ms=timings.median("dessilbi") * 1e3,
                      ratio=ratio, batch=cfg.batch_size)
    row.figure = (f"{ratio:.3f}× ({row.detail['dessilbi_path']}: {timings.median('dessilbi') * 1e3:.1f} vs "
                  f"{timings.median('sgd') * 1e3:.1f} ms)")
    row.goal = f"≤ {GOAL_ITERATION}×"
    row.ok = None if cfg.smoke else ratio <= GOAL_ITERATION


# -- 5. growth job --------------------------------------------------------------------------------


def check_growth_job(cfg: Config, row: Row) -> None:
    spec = {
        "method": "grow", "seed": 0,
        "model": {"family": "vgg", "layers": [8, "M", 8, "M", 8], "classifier": []},
        "data": {"name": "synthetic", "num_classes": 4, "channels": 3, "size": 16, "samples": 512},
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.1, "device": cfg.device.type,
                  "precision": "bf16" if cfg.device.type == "cuda" else "fp32", "channels_last": True},
        "optimizer": {"kappa": 1.0, "nu": 1.0, "lam": 0.2},
        "growth": {"every": 2, "threshold": 0.25, "add": 4, "finetune_epochs": 1},
    }
    start = time.perf_counter()
    result = growth.run(spec)
    row.detail["seconds"] = time.perf_counter() - start
    row.detail["widths"] = result["final"]["widths"]
    row.detail["events"] = len(result["events"])
    row.detail["test_accuracy"] = result["final"]["test_accuracy"]
    row.figure = f"{row.detail['seconds']:.1f} s, {len(result['events'])} widening(s)"
    row.goal = "finishes, grows"
    row.ok = result["epochs"] >= 3 and len(result["events"]) >= 1 and math.isfinite(result["history"][-1]["train_loss"])


# -- the table ------------------------------------------------------------------------------------


def run_checks(cfg: Config) -> list[Row]:
    rows = [
        measured(Row("step vs float64 reference"), cfg.device, lambda r: check_step(cfg, r)),
        measured(Row("widen VGG16, state kept"), cfg.device, lambda r: check_widen(cfg, r)),
        measured(Row("step ratio ÷ SGD fused, VGG16"), cfg.device, lambda r: check_step_ratio(cfg, r, "vgg16")),
        measured(Row("step ratio ÷ SGD fused, ResNet-56"), cfg.device,
                 lambda r: check_step_ratio(cfg, r, "resnet56")),
    ]
    for precision in ("fp32", "bf16"):
        rows.append(measured(Row(f"iteration ratio, {precision}, batch {cfg.batch_size}"), cfg.device,
                             lambda r, p=precision: check_iteration(cfg, r, p)))
    rows.append(measured(Row("growth job end to end"), cfg.device, lambda r: check_growth_job(cfg, r)))
    return rows


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| check | figure | goal | pass | peak GPU memory |", "|---|---|---|:-:|---:|"]
    for r in rows:
        mark = {True: "yes", False: "**no**", None: "–"}[r.ok]
        peak = f"{r.peak_mib:.0f} MiB" if r.peak_mib is not None else "–"
        figure = r.figure if r.error is None else f"error: {r.error}"
        lines.append(f"| {r.check} | {figure} | {r.goal} | {mark} | {peak} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu, with --smoke")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks the script, not the device")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the rows ({DEFAULT_JSON})")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
              "nothing to check here. Run it on a GPU host, or with --device cpu --smoke to check the script.")
        return 0
    if device.type != "cuda" and not args.smoke:
        parser.error("--device cpu only with --smoke: the figures are for CUDA")

    available, why = fused_available(device)
    cfg = Config(device=device, smoke=args.smoke, fused_available=available,
                 step_repeats=5 if args.smoke else 41, iteration_repeats=3 if args.smoke else 21,
                 batch_size=8 if args.smoke else 128)
    started = time.perf_counter()
    rows = run_checks(cfg)
    seconds = time.perf_counter() - started

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()} CPU (smoke run: figures mean nothing)")
    triton_version = "–"
    if available:
        import triton

        triton_version = triton.__version__
    header = (f"`python bench/gpu_check.py{' --device cpu --smoke' if args.smoke else ''}` — torch "
              f"{torch.__version__}, Triton {triton_version}, {where}; {seconds:.0f} s."
              + ("" if available else f" Fused path not run: {why}."))
    print(markdown(rows, header))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": " ".join(["python", "bench/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "device": where, "torch": torch.__version__, "triton": triton_version, "seconds": seconds,
        "fused_available": available, "interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "rows": [asdict(r) for r in rows],
    }, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
