"""The checks a run makes before it loads any data: the same ones wherever a spec is accepted.

``check_runnable(spec)`` is called by ``growth.run`` before anything else, and
by the service when a job is submitted, so a spec the API accepts is one a
worker can run (not a second list of rules that drifts from the first). It
needs no data and no memory: the model is built on the meta device for the
images the data spec yields and a batch of that shape is probed through it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import SpecError
from .spec import data_classes, input_shape_of

if TYPE_CHECKING:
    from .spec import JobSpec


def check_runnable(spec: JobSpec) -> None:
    """Raise ``SpecError`` naming the field if the model cannot train on the data the spec names."""
    from .methods import METHODS
    from .models import build_model

    channels, height, width = input_shape_of(spec.data)
    classes = data_classes(spec.data)
    model = spec.model
    if model["in_channels"] != channels:
        raise SpecError("model.in_channels", f"is {model['in_channels']}, but the {spec.data['name']} images have "
                                              f"{channels} channel{'s' if channels != 1 else ''}; leave it out to "
                                              "take it from the data")
    if model["num_classes"] != classes:
        raise SpecError("model.num_classes", f"is {model['num_classes']}, but {spec.data['name']} has {classes} "
                                              "classes; leave it out to take it from the data")
    if list(model["input_size"]) != [height, width]:
        raise SpecError("model.input_size", f"is {model['input_size']}, but the {spec.data['name']} images are "
                                             f"{height}×{width}; leave it out to take it from the data")
    net = build_model(model, device="meta")
    try:
        with torch.no_grad():
            # Two images: batch norm in training mode needs more than one value per channel.
            logits = net(torch.empty((2, channels, height, width), device="meta"))
    except (RuntimeError, ValueError) as exc:  # e.g. a pooling that leaves less than one pixel
        raise SpecError("model.layers" if model["family"] == "vgg" else "model.stages",
                        f"the model cannot run on {channels}×{height}×{width} images: {exc}") from exc
    if tuple(logits.shape) != (2, classes):
        raise SpecError("model", f"produces outputs of shape {tuple(logits.shape)[1:]} for {classes} classes")
    METHODS[spec.method](spec).check_model(net)
