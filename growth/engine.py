"""The run loop every method shares: ``growth.run(spec, on_event)``.

Data, epochs, evaluation, events and checkpoints live here; what differs
between DessiLBI growth and the baselines lives in ``growth.methods``, which
also defines the contract (``Method`` and the ``RunContext`` it is handed). A run is reproducible from its spec (seeded generators for
initialisation, shuffling, augmentation and new filters) and resumes from a
checkpoint with the same history as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor

from . import checkpoint as ckpt
from .counting import count
from .data import Splits, load_dataset
from .errors import SpecError
from .events import ArchitectureChanged, CheckpointWritten, EpochEnd, Event, Finished, UnitStat
from .methods import METHODS, Change, Method, RunContext
from .models import build_model
from .preflight import check_runnable
from .spec import JobSpec, input_shape_of, parse_spec
from .training import Precision, resolve_device, set_lr, train_epoch

EventHandler = Callable[[Event], None]


def run(
    spec: Mapping[str, Any] | JobSpec,
    on_event: EventHandler | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run a job to completion and return its result JSON (see docs/architecture.md)."""
    # Module constructors draw their default init from the global RNG before ours overwrites it:
    # fork it so that a run leaves the caller's random state as it found it.
    with torch.random.fork_rng(devices=[]):
        return _run(spec, on_event, checkpoint_dir=checkpoint_dir, resume_from=resume_from,
                    should_stop=should_stop)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` intra-op CPU threads, and give the caller its own count back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run(
    spec: Mapping[str, Any] | JobSpec,
    on_event: EventHandler | None,
    *,
    checkpoint_dir: str | Path | None,
    resume_from: str | Path | None,
    should_stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    job = parse_spec(spec)
    check_runnable(job)  # what the service checks at submission, before any data is loaded
    emit = on_event or (lambda event: None)
    method: Method = METHODS[job.method](job)
    state = ckpt.load(resume_from) if resume_from is not None else None
    # Both sides normalised by this version's parser: a checkpoint written before a field with a default
    # was added (a rolling upgrade) still belongs to the same spec.
    if state is not None and parse_spec(state["spec"]).to_dict() != job.to_dict():
        raise SpecError("resume_from", "the checkpoint belongs to a different spec; resume with the spec it was made from")
    # The thread count is part of what makes a run reproducible: a resumed run keeps the one it started with.
    recorded = (state or {}).get("environment", {}).get("threads")
    threads = job.train.threads or recorded or torch.get_num_threads()
    with _torch_threads(threads):
        return _train(job, method, state, emit, checkpoint_dir=checkpoint_dir, should_stop=should_stop)


def _train(job: JobSpec, method: Method, state: dict[str, Any] | None, emit: EventHandler, *,
           checkpoint_dir: str | Path | None, should_stop: Callable[[], bool] | None) -> dict[str, Any]:
    ctx = _build(job, method, state)
    first_epoch = 0
    elapsed = 0.0
    if state is None:
        _apply(ctx, _init_changes(ctx) + method.prepare(ctx), epoch=-1, emit=emit)
    else:
        first_epoch, elapsed = state["epoch"], state["elapsed"]
        ctx.history, ctx.changes = state["history"], state["changes"]

    started = time.perf_counter() - elapsed
    epoch = first_epoch
    # A resumed run must see the lr it left off at, so that it reports an lr change where an
    # uninterrupted run would.
    lr_before = method.schedule(first_epoch - 1)[1] if first_epoch > 0 else None
    while (plan := method.schedule(epoch)) is not None:
        phase, lr = plan
        if lr_before is not None and lr != lr_before:
            method.lr_changed(ctx, lr_before, lr)
        lr_before = lr
        set_lr(ctx.optimizer, lr)
        epoch_started = time.perf_counter()
        size = count(ctx.model, ctx.input_shape)
        x, y = ctx.splits.train
        loss = train_epoch(ctx.model, ctx.optimizer, x, y, batch_size=job.train.batch_size,
                           shuffle=ctx.shuffle_rng, augmenter=ctx.augment_rng, epoch=epoch,
                           should_stop=should_stop, precision=ctx.precision, channels_last=ctx.channels_last)
        ctx.train_loss = loss
        method.before_evaluation(ctx)
        val_accuracy = ctx.evaluate()
        support = method.support_accuracy(ctx, ("val",))
        stats = ctx.unit_stats()
        changes = method.after_epoch(ctx, epoch, val_accuracy)
        grew = {name: new - old for change in changes for name, (old, new) in change.units.items()}
        stats = [UnitStat(s.name, s.width, s.selected, s.ratio, grew.get(s.name, 0)) for s in stats]
        _apply(ctx, changes, epoch, emit)
        record = EpochEnd(epoch=epoch, phase=phase, train_loss=loss, val_accuracy=val_accuracy, lr=lr,
                          params=size.params, macs=size.macs, seconds=time.perf_counter() - epoch_started,
                          units=stats, sparsity=method.epoch_sparsity(ctx),
                          support_val_accuracy=support["val"] if support is not None else None)
        ctx.history.append(_history_row(record))
        epoch += 1
        path = None
        if checkpoint_dir is not None and (epoch % job.train.checkpoint_every == 0 or method.schedule(epoch) is None):
            path = ckpt.save(checkpoint_dir, epoch - 1, _snapshot(ctx, method, epoch, time.perf_counter() - started))
            emit(CheckpointWritten(epoch=epoch - 1, path=str(path)))
        emit(dataclasses.replace(record, checkpoint=str(path) if path else None))

    result = _result(ctx, method, epochs=epoch, wall_seconds=time.perf_counter() - started)
    if checkpoint_dir is not None:
        # A run resumed from its last checkpoint trains no epoch, so no checkpoint created the folder.
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        weights = Path(checkpoint_dir) / "final.pt"
        torch.save({k: v.detach().cpu().contiguous() for k, v in ctx.model.state_dict().items()}, weights)
        result["weights"] = str(weights)
    emit(Finished(result=result))
    return result


def _build(job: JobSpec, method: Method, state: dict[str, Any] | None) -> RunContext:
    device = resolve_device(job.train.device)
    cpu = torch.device("cpu")

    def generator(offset: int, on: torch.device) -> torch.Generator:
        g = torch.Generator(device=on)
        g.manual_seed(job.seed * 1_000_003 + offset)
        return g

    splits = load_dataset(job.data, seed=job.seed).to(device)
    model_spec = state["model_spec"] if state is not None else job.model
    # A generator of its own: the caller's global RNG is neither used nor disturbed.
    model = build_model(model_spec, generator=generator(0, cpu))
    if state is None and job.init is not None:
        from .init import load_state

        try:
            model.load_state_dict(load_state(job.init["weights"]))
        except RuntimeError as exc:  # the file no longer matches the spec it was parsed into
            raise SpecError("init.weights", f"the weights do not fit the network in its own metadata "
                                            f"({str(exc).splitlines()[0]})") from exc
    model = model.to(device)
    if job.train.channels_last:
        # before the optimizer exists: its state is created in the parameters' memory format
        model = model.to(memory_format=torch.channels_last)
    precision = Precision(job.train.precision, device)
    groups = model.param_groups()
    if state is not None:
        model.load_state_dict(state["model"])
        groups = ckpt.regroup(groups, state["param_names"], model)
        # Before the optimizer is built: a method that switched optimizers (dessilbi_prune's
        # fine-tuning) builds the one its checkpointed state was written by.
        method.load_state_dict(state["method"])
    optimizer = method.build_optimizer(groups)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    ctx = RunContext(spec=job, model=model, optimizer=optimizer, splits=splits, device=device,
                     input_shape=input_shape_of(job.data), shuffle_rng=generator(1, cpu),
                     augment_rng=generator(2, device) if job.data.get("augment") else None,
                     init_rng=generator(3, cpu), precision=precision, channels_last=job.train.channels_last)
    if state is not None:
        precision.load_state_dict(state.get("precision", {}))
        ctx.shuffle_rng.set_state(state["rng"]["shuffle"])
        ctx.init_rng.set_state(state["rng"]["init"])
        if ctx.augment_rng is not None:
            ctx.augment_rng.set_state(state["rng"]["augment"].to(ctx.augment_rng.get_state().device))
    return ctx


def _init_changes(ctx: RunContext) -> list[Change]:
    """A run that starts from a grown network records it as its first event: where from, and every width."""
    if ctx.spec.init is None:
        return []
    return [Change("init", {unit.name: (unit.width, unit.width) for unit in ctx.model.units()})]


def _apply(ctx: RunContext, changes: list[Change], epoch: int, emit: EventHandler) -> None:
    for change in changes:
        units = {name: [old, new] for name, (old, new) in change.units.items()}
        ctx.changes.append({"epoch": epoch, "change": change.kind, "units": units})
        emit(ArchitectureChanged(epoch=epoch, change=change.kind, units=units, spec=ctx.model.to_spec()))


def _history_row(record: EpochEnd) -> dict[str, Any]:
    row = record.to_dict()
    row.pop("kind")
    row.pop("checkpoint")
    return row


def _snapshot(ctx: RunContext, method: Method, next_epoch: int, elapsed: float) -> dict[str, Any]:
    rng: dict[str, Tensor] = {"shuffle": ctx.shuffle_rng.get_state(), "init": ctx.init_rng.get_state()}
    if ctx.augment_rng is not None:
        rng["augment"] = ctx.augment_rng.get_state().cpu()
    return {
        "spec": ctx.spec.to_dict(),
        "model_spec": ctx.model.to_spec(),
        "model": {k: v.detach().cpu() for k, v in ctx.model.state_dict().items()},
        "optimizer": ctx.optimizer.state_dict(),
        "param_names": ckpt.optimizer_param_names(ctx.optimizer, ctx.model),
        "rng": rng,
        "epoch": next_epoch,
        "elapsed": elapsed,
        "method": method.state_dict(),
        "precision": ctx.precision.state_dict(),  # the fp16 loss scale
        "history": ctx.history,
        "changes": ctx.changes,
        "environment": environment(ctx),
    }


def environment(ctx: RunContext) -> dict[str, Any]:
    """What besides the spec decides a run's numbers: torch's CPU thread count, the device and the dtype."""
    dtype = next((p.dtype for p in ctx.model.parameters()), torch.get_default_dtype())
    return {"threads": torch.get_num_threads(), "device": ctx.device.type, "dtype": str(dtype).removeprefix("torch.")}


def _result(ctx: RunContext, method: Method, *, epochs: int, wall_seconds: float) -> dict[str, Any]:
    size = count(ctx.model, ctx.input_shape)
    support = method.final_support_accuracy(ctx) or {}
    return {
        "method": ctx.spec.method,
        "spec": ctx.spec.to_dict(),
        "final": {
            "widths": {u.name: u.width for u in ctx.model.units()},
            "params": size.params,
            "macs": size.macs,
            "test_accuracy": ctx.evaluate(split="test"),
            "val_accuracy": ctx.evaluate(split="val"),
            # The network Γ selects (paper section 5.2), None for methods without Γ; selected filters
            # per unit are Γ's non-zero groups under DessiLBI, non-zero filters otherwise.
            "support_val_accuracy": support.get("val"),
            "support_test_accuracy": support.get("test"),
            "selected": {s.name: s.selected for s in ctx.unit_stats()},
            "model": ctx.model.to_spec(),
            # What a deployed copy needs to see images as this run did: [0, 1] pixels, then (x - mean) / std.
            "preprocessing": {"input_shape": list(ctx.input_shape), "mean": list(ctx.splits.mean),
                              "std": list(ctx.splits.std)},
            "class_names": list(ctx.splits.class_names) if ctx.splits.class_names else None,
        },
        "history": ctx.history,
        "events": ctx.changes,
        "epochs": epochs,
        "wall_seconds": wall_seconds,
        "environment": environment(ctx),
        **({"init": dict(ctx.spec.init)} if ctx.spec.init is not None else {}),
        **method.result_extras(ctx),
    }
