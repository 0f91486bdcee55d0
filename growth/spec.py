"""The job spec: one JSON format for the CLI, the library and the HTTP service.

``parse_spec`` validates a plain dict and fills in defaults; every error names
the offending field as a dotted path (``growth.threshold``) and says what a
valid value looks like. ``JobSpec.to_dict()`` gives back the normalised JSON.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import init as start
from . import validation as check
from .data import validate_data_spec
from .data.spec import STANDARD_SAMPLES
from .data.summary import USER_FORMATS, DatasetSummary
from .errors import SpecError
from .methods import METHODS as _METHOD_CLASSES
from .models import validate_model_spec

METHODS = tuple(_METHOD_CLASSES)  # the built-in methods' names; parse_spec reads the live registry


def _bounded(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False, hint: str = "") -> dict[str, Any]:
    return {"bounds": (lo, hi, lo_open, hi_open), "hint": hint}


def _one_of(*choices: str, hint: str = "") -> dict[str, Any]:
    """A string field that takes one of ``choices`` (checked by ``parse_spec``, an ``enum`` in the schema)."""
    return {"choices": choices, "hint": hint}


def _matching(pattern: str, *, hint: str) -> dict[str, Any]:
    """A string field's rule: it must match ``pattern`` (a JSON-schema pattern, anchored), explained by ``hint``.

    The one definition both the parser (``_section``) and the OpenAPI schema
    (``app.schemas``) read, so the schema is never looser than the check.
    """
    return {"pattern": pattern, "hint": hint}


@dataclass
class TrainSpec:
    epochs: int = field(default=60, metadata=_bounded(1, hint="the number of (growing) epochs, e.g. 60"))
    batch_size: int = field(default=64, metadata=_bounded(1, 65536))
    lr: float = field(default=0.1, metadata=_bounded(0, 10, lo_open=True))
    momentum: float = field(default=0.9, metadata=_bounded(0, 1, hi_open=True))
    weight_decay: float = field(default=1e-4, metadata=_bounded(0, 1))
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = field(default=0.1, metadata=_bounded(0, 1, lo_open=True))
    device: str = field(default="auto", metadata=_matching("^(auto|cpu|cuda(:[0-9]+)?)$",
                                                             hint="'auto', 'cpu' or 'cuda[:N]'"))
    checkpoint_every: int = field(default=1, metadata=_bounded(1))
    precision: str = field(default="fp32", metadata=_one_of(
        "fp32", "bf16", "fp16", hint="autocast of forward passes; weights and optimizer state stay float32"))
    channels_last: bool = field(default=False, metadata={"hint": "channels_last memory format for conv weights"})
    # torch's CPU kernels split reductions by thread, so the thread count changes the float results
    # (99.72 % vs 98.61 % for one digits spec with 2 threads and 1). None: the process's count when
    # the run starts, recorded in its checkpoints; a resumed run uses the recorded count.
    threads: int | None = field(default=None, metadata=_bounded(1, 1024, hint="torch CPU threads, e.g. 1"))

    def check(self, path: str) -> None:
        if sorted(self.lr_milestones) != self.lr_milestones or any(m < 1 for m in self.lr_milestones):
            raise SpecError(f"{path}.lr_milestones", "must be increasing epoch numbers ≥ 1, e.g. [30, 60]")


@dataclass
class OptimizerSpec:
    """DessiLBI hyper-parameters (methods ``grow`` and ``dessilbi_prune``)."""

    kappa: float = field(default=1.0, metadata=_bounded(0, lo_open=True))
    nu: float = field(default=100.0, metadata=_bounded(0, lo_open=True))
    lam: float = field(default=1.0, metadata=_bounded(0))
    magnitude_scaling: bool = False
    beta_min: float = field(default=0.01, metadata=_bounded(0, 1, lo_open=True, hint="floor of β, eq. (15)"))


@dataclass
class GrowthSpec:
    every: int = field(default=10, metadata=_bounded(1, hint="J, epochs between growth checks"))
    threshold: float = field(default=0.8, metadata=_bounded(0, 1, lo_open=True, hint="τ in (0, 1]"))
    add: int = field(default=8, metadata=_bounded(1, hint="filters added at least, plain nets"))
    factor: float = field(default=1.1, metadata=_bounded(1, 10))
    residual_add: int = field(default=4, metadata=_bounded(1, hint="filters added at least, residual nets"))
    max_width: int = field(default=512, metadata=_bounded(1))
    finetune_epochs: int = field(default=30, metadata=_bounded(0))
    # times the lr of the last growth epoch (milestones included), so fine-tuning is never faster
    finetune_lr_factor: float = field(default=0.1, metadata=_bounded(0, 1, lo_open=True))
    # When growth ends (growth/methods/grow.py says both rules exactly). "no_trigger", the default,
    # is the authors' code and what every example and benchmark so far ran; "plateau" is the
    # journal paper's wording (section 5.3).
    stop: str = field(default="no_trigger", metadata=_one_of(
        "no_trigger", "plateau",
        hint="'no_trigger': stop at the first check where no unit triggers (the authors' code); "
             "'plateau': grow on until the training loss changes by less than plateau_tol over J epochs"))
    plateau_tol: float = field(default=0.01, metadata=_bounded(
        0, 1, lo_open=True, hint="relative change of the training loss over J epochs, e.g. 0.01 (stop: 'plateau')"))


@dataclass
class PruneSpec:
    """Pruning, then fine-tuning with SGD (methods ``l1_prune`` and ``dessilbi_prune``).

    ``keep`` (unit name → share of filters kept), ``sensitivity`` and ``from_checkpoint``
    are L1 filter pruning's (Li et al., ICLR 2017); ``dessilbi_prune`` keeps the filters Γ selected.
    """

    keep: dict[str, float] = field(default_factory=dict)
    finetune_epochs: int = field(default=40, metadata=_bounded(0))
    finetune_lr: float = field(default=0.001, metadata=_bounded(0, 10, lo_open=True))
    finetune_momentum: float = field(default=0.9, metadata=_bounded(0, 1, hi_open=True))
    finetune_weight_decay: float = field(default=1e-4, metadata=_bounded(0, 1))
    sensitivity: bool = False
    sensitivity_ratios: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    from_checkpoint: str | None = None

    def check(self, path: str) -> None:
        for unit, share in self.keep.items():
            if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
                raise SpecError(f"{path}.keep.{unit}", "must be the share of filters kept, in (0, 1]")
        for i, r in enumerate(self.sensitivity_ratios):
            if not 0 < r < 1:
                raise SpecError(f"{path}.sensitivity_ratios[{i}]", "must be a pruned share in (0, 1)")


@dataclass
class AutogrowSpec:
    """AutoGrow (Wen et al., KDD 2020): depth growth of a residual seed."""

    every: int = field(default=3, metadata=_bounded(1, hint="K, epochs between block additions"))
    patience: int = field(default=6, metadata=_bounded(1, hint="J, epochs over which improvement is measured"))
    min_improvement: float = field(default=0.05, metadata=_bounded(0, 100, hint="percentage points"))
    initializer: str = field(default="gaussian", metadata=_matching(
        "^(gaussian|zero)$", hint="'gaussian' (AutoGrow's default) or 'zero'"))
    init_std: float = field(default=1e-3, metadata=_bounded(0, hint="σ of the new block's last BN weight"))
    max_blocks: int = field(default=8, metadata=_bounded(1))
    finetune_epochs: int = field(default=20, metadata=_bounded(0))


@dataclass
class RegularizerSpec:
    """Group-lasso weight λ for RMDA and proximal SGD."""

    lam: float = field(default=1e-4, metadata=_bounded(0))


@dataclass
class JobSpec:
    method: str
    seed: int
    model: dict[str, Any]
    data: dict[str, Any]
    train: TrainSpec
    optimizer: OptimizerSpec
    growth: GrowthSpec
    prune: PruneSpec
    autogrow: AutogrowSpec
    regularizer: RegularizerSpec
    # {"weights": path, "job": id or None}: start from a grown network (growth/init.py); None: from scratch
    init: dict[str, Any] | None = None

    @property
    def starts_trained(self) -> bool:
        """True when the network's weights come from elsewhere (init or prune.from_checkpoint)."""
        return self.init is not None or bool(self.prune.from_checkpoint)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def total_epochs(self) -> int:
        """An upper bound on the epochs this job runs (all phases), as its method counts them."""
        return _METHOD_CLASSES[self.method].epoch_budget(self)


_SECTIONS: dict[str, type] = {
    "train": TrainSpec,
    "optimizer": OptimizerSpec,
    "growth": GrowthSpec,
    "prune": PruneSpec,
    "autogrow": AutogrowSpec,
    "regularizer": RegularizerSpec,
}
_TOP_LEVEL = ("method", "seed", "model", "data", "init", *_SECTIONS)


def parse_spec(raw: Mapping[str, Any] | JobSpec) -> JobSpec:
    """Validate a job spec and fill in defaults; raises ``SpecError`` naming the field."""
    if isinstance(raw, JobSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise SpecError("spec", f"must be a JSON object, got {type(raw).__name__}")
    check.reject_unknown(raw, _TOP_LEVEL, "")
    method = raw.get("method")
    if not isinstance(method, str) or method not in _METHOD_CLASSES:
        raise SpecError("method", f"must be one of {', '.join(_METHOD_CLASSES)}; got {method!r}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise SpecError("seed", "must be a non-negative integer")
    init = start.validate_init_spec(raw.get("init"))
    if "model" not in raw and init is None:
        raise SpecError("model", "is required, e.g. {\"family\": \"vgg\", \"layers\": [8, \"M\", 8]}")
    if "data" not in raw:
        raise SpecError("data", "is required, e.g. {\"name\": \"digits\"}")

    data = validate_data_spec(check.mapping(raw["data"], "data"))
    if init is not None:
        # The network comes from the weights file; a stated model must agree with it.
        model = validate_model_spec(start.merge_model(raw.get("model"), start.source_model(init["weights"])))
        start.check_data_fits(model, input_shape_of(data), data_classes(data))
    else:
        model = check.mapping(raw["model"], "model")
        # The data decide input channels and classes unless the model says otherwise.
        model.setdefault("in_channels", _data_channels(data))
        model.setdefault("num_classes", data_classes(data))
        model.setdefault("input_size", list(input_shape_of(data)[1:]))
        model = validate_model_spec(model)
    sections = {name: _section(cls, raw.get(name, {}), name) for name, cls in _SECTIONS.items()}
    spec = JobSpec(method=method, seed=seed, model=model, data=data, init=init, **sections)
    _check_method_fits_model(spec)
    return spec


def _check_method_fits_model(spec: JobSpec) -> None:
    if spec.init is not None and spec.prune.from_checkpoint:
        raise SpecError("prune.from_checkpoint", "init already gives the network to start from; drop one of them")
    family = spec.model.get("family")
    if spec.method == "autogrow" and family != "resnet":
        raise SpecError("model.family", "method 'autogrow' grows depth and needs the 'resnet' family")
    _METHOD_CLASSES[spec.method].check_spec(spec)
    if spec.train.lr_milestones and spec.train.lr_milestones[-1] > spec.total_epochs:
        raise SpecError("train.lr_milestones", f"milestones must not exceed the {spec.total_epochs} epochs of the job")


def _data_channels(data: Mapping[str, Any]) -> int:
    name = data["name"]
    if name == "synthetic":
        return int(data["channels"])
    if name in USER_FORMATS:
        return describe_user_data(data).channels
    return 3 if name.startswith("cifar") else 1


def input_shape_of(data: Mapping[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) of the images a validated data spec yields."""
    name = data["name"]
    if name in USER_FORMATS:
        channels, height, width = describe_user_data(data).image_shape  # type: ignore[misc]
        size = data.get("image_size")
        return (channels, size, size) if size else (channels, height, width)
    if data.get("image_size"):
        size = int(data["image_size"])
    elif name == "synthetic":
        size = int(data["size"])
    else:
        size = {"digits": 8, "cifar10": 32, "cifar100": 32, "mnist": 28, "fashion_mnist": 28}[name]
    return (_data_channels(data), size, size)


def dataset_bytes(data: Mapping[str, Any]) -> int:
    """Bytes of float32 images a validated data spec puts in memory (train, validation and test together).

    The fixed datasets are counted at their published sizes, so this bounds
    what ``image_size`` and ``limit`` make of them before any file is read.
    """
    name = data["name"]
    if name == "synthetic":
        total, test = int(data["samples"]), 0
    elif name in USER_FORMATS:
        summary = describe_user_data(data)
        total, test = summary.train_samples, summary.test_samples
    else:
        total, test = STANDARD_SAMPLES[name]
    if test == 0:  # the loader carves the test split out of the samples
        test = min(max(1, round(data["test_fraction"] * total)), total - 1)
        total -= test
    if data.get("limit") is not None:
        total = min(total, int(data["limit"]))
    channels, height, width = input_shape_of(data)
    return (total + test) * channels * height * width * 4


def data_classes(data: Mapping[str, Any]) -> int:
    """The number of classes of the dataset a validated data spec names."""
    name = data["name"]
    if name == "synthetic":
        return int(data["num_classes"])
    if name in USER_FORMATS:
        return describe_user_data(data).num_classes
    return 100 if name == "cifar100" else 10


def describe_user_data(data: Mapping[str, Any]) -> DatasetSummary:
    """What an npz file or image folder holds, read once per file version (headers and labels only)."""
    path = Path(data["path"])
    try:
        stamp = path.stat()
        version = (stamp.st_mtime_ns, stamp.st_size, stamp.st_ino)
    except OSError:
        version = None  # describe() names the missing path
    return _describe_cached(data["name"], str(path), data.get("image_size"), version)


@functools.lru_cache(maxsize=32)
def _describe_cached(name: str, path: str, image_size: int | None, version: object) -> DatasetSummary:
    from .data import user

    return user.describe({"name": name, "path": path, "image_size": image_size})


def _section(cls: type, raw: Any, path: str) -> Any:
    raw = check.mapping(raw, path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check.reject_unknown(raw, fields, path)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        where = f"{path}.{name}"
        values[name] = _coerce(value, hints[name], where)
        choices = fields[name].metadata.get("choices")
        if choices is not None and values[name] not in choices:
            raise SpecError(where, f"must be one of {', '.join(map(repr, choices))}, got {values[name]!r}")
        bounds = fields[name].metadata.get("bounds")
        if bounds is not None and isinstance(values[name], (int, float)) and not isinstance(values[name], bool):
            lo, hi, lo_open, hi_open = bounds
            check.in_range(values[name], where, lo, hi, lo_open=lo_open, hi_open=hi_open,
                           hint=fields[name].metadata.get("hint", ""))
        pattern = fields[name].metadata.get("pattern")
        if (pattern is not None and isinstance(values[name], str)
                and not re.fullmatch(pattern.removeprefix("^").removesuffix("$"), values[name])):
            raise SpecError(where, f"must be {fields[name].metadata['hint']}, got {values[name]!r}")
    section = cls(**values)
    if hasattr(section, "check"):
        section.check(path)
    return section


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if hint is bool:
        return check.boolean(value, where)
    if hint is int:
        return check.integer(value, where)
    if hint is float:
        return check.number(value, where)
    if hint is str:
        return check.string(value, where)
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(where, f"must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SpecError(where, f"must be a JSON object, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported spec type {hint!r}")  # a bug in this module, not bad input
