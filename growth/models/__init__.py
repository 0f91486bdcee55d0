"""Growable model families built from JSON specs (``build_model(spec)``).

Importing this package registers the built-in families, ``vgg`` and ``resnet``.
"""
from __future__ import annotations

from growth.models.base import CLASSIFIER_HEAD, GrowableNet, Unit
from growth.models.registry import (
    build_model,
    family_class,
    family_names,
    model_json_schema,
    register_family,
    validate_model_spec,
)
from growth.models.resnet import ResNet
from growth.models.vgg import VGG

__all__ = [
    "CLASSIFIER_HEAD",
    "GrowableNet",
    "ResNet",
    "Unit",
    "VGG",
    "build_model",
    "family_class",
    "family_names",
    "model_json_schema",
    "register_family",
    "validate_model_spec",
]
