"""What a submitted job may ask for: the spec's own rules plus this server's limits.

Everything here runs before a job is stored or queued, and every refusal is a
``growth.errors.SpecError`` naming the field, so the API answers 422 with the
same ``loc`` shape as any other validation error.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from growth.errors import SpecError
from growth.spec import JobSpec, dataset_bytes, input_shape_of, parse_spec
from worker.store.datasets import check_data_root
from worker.store.settings import Settings

# Devices a job submitted over HTTP may ask for. A GPU index ("cuda:1") names a GPU of one machine,
# but the job runs on whichever worker takes it, and each worker trains on the GPU it was given (a
# worker service sees its own GPU as the default "cuda" device): an index it lacks would only fail there.
HTTP_DEVICES = ("auto", "cpu", "cuda")

# Model-spec integers that are not layer widths.
_NOT_WIDTHS = frozenset({"in_channels", "num_classes", "input_size", "stride"})


class LimitExceeded(SpecError):
    """A valid spec that asks for more than this server allows."""


class OwnerLimitReached(Exception):
    """The owner has as much in the system as this server allows one owner; answered 429."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


SUBMISSION_WINDOW_SECONDS = 60.0


def check_owner_limits(usage: Any, settings: Settings) -> None:
    """Refuse a new job of an owner at one of the per-owner limits (``OwnerLimitReached``, a 429).

    Checked before the job is stored, from one read of the owner's usage: two
    submissions racing each other can both pass, so a limit may be exceeded by
    the number of requests in flight at once, never more.
    """
    if usage.active_jobs >= settings.max_active_jobs_per_owner:
        raise OwnerLimitReached(
            f"you have {usage.active_jobs} jobs queued or running; this server allows "
            f"{settings.max_active_jobs_per_owner} per owner: submit again when one has finished",
            retry_after=max(1, round(settings.lease_seconds)))
    if usage.submissions_in_window >= settings.max_submissions_per_minute:
        age = usage.oldest_in_window_age or 0.0
        raise OwnerLimitReached(
            f"you submitted {usage.submissions_in_window} jobs in the last minute; this server allows "
            f"{settings.max_submissions_per_minute} per minute per owner",
            retry_after=max(1, math.ceil(SUBMISSION_WINDOW_SECONDS - age)))
    if usage.artifact_bytes >= settings.max_artifact_bytes_per_owner:
        raise OwnerLimitReached(
            f"your jobs' checkpoints and weights take {_size(usage.artifact_bytes)}; this server allows "
            f"{_size(settings.max_artifact_bytes_per_owner)} per owner", retry_after=None)


def parse_submission(raw: Any, settings: Settings) -> JobSpec:
    """``growth.spec.parse_spec`` plus what a shared server refuses; raises ``SpecError`` (or ``LimitExceeded``)."""
    spec = parse_spec(raw)
    if spec.prune.from_checkpoint is not None:
        raise LimitExceeded("prune.from_checkpoint",
                        "is a file path on the machine that runs the job and is not accepted over HTTP; "
                        "use method 'l1_prune' with train.epochs to train the dense network in the same job")
    if spec.train.device not in HTTP_DEVICES:
        raise LimitExceeded("train.device",
                            f"{spec.train.device!r} is not accepted over HTTP: use 'auto', 'cpu' or 'cuda'; "
                            "each worker runs jobs on the GPU it was given")
    check_data_root(spec.data, settings.data_dir)
    check_limits(spec, settings)
    return spec


def check_limits(spec: JobSpec, settings: Settings) -> None:
    total = spec.total_epochs
    if total > settings.max_epochs:
        raise LimitExceeded("train.epochs", f"the job would run {total} epochs over all its phases (training plus "
                                        f"fine-tuning); this server allows at most {settings.max_epochs}")
    layers = 0
    for path, width in model_widths(spec.model, "model"):
        layers += 1
        if width > settings.max_width:
            raise LimitExceeded(path, f"width {width} is above this server's limit of {settings.max_width}")
    if layers > settings.max_layers:
        raise LimitExceeded("model", f"has {layers} layers; this server allows at most {settings.max_layers}")
    if spec.method == "grow" and spec.growth.max_width > settings.max_width:
        raise LimitExceeded("growth.max_width", f"must be at most this server's width limit of {settings.max_width}")

    loaded = dataset_bytes(spec.data)
    if loaded > settings.max_dataset_bytes:
        raise LimitExceeded("data", f"would load {_size(loaded)} of images into memory; this server allows at most "
                                    f"{_size(settings.max_dataset_bytes)}: lower data.image_size, data.limit or "
                                    f"the synthetic data.samples / data.size")

    from growth.counting import count  # imports torch: only once the cheap checks have passed
    from growth.preflight import check_runnable

    check_runnable(spec)  # what the worker checks before it runs: the model builds and fits the data

    params = count(spec.model, input_shape_of(spec.data)).params
    if params > settings.max_params:
        raise LimitExceeded("model", f"has {params:,} parameters; this server allows at most {settings.max_params:,}")


def _size(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def model_widths(model: Any, path: str) -> Iterator[tuple[str, int]]:
    """Every layer width in a (validated) model spec, with its dotted path: ``model.layers[3]``."""
    if isinstance(model, Mapping):
        for key, value in model.items():
            if key not in _NOT_WIDTHS:
                yield from model_widths(value, f"{path}.{key}")
    elif isinstance(model, list):
        for i, value in enumerate(model):
            yield from model_widths(value, f"{path}[{i}]")
    elif isinstance(model, int) and not isinstance(model, bool):
        yield path, model
