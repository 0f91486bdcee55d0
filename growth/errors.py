"""Errors the growth library raises for bad input.

Every error that a user can cause names the offending field (a dotted path into
the job spec, e.g. ``growth.threshold``) and says how to fix it, so that the CLI
and the HTTP service can report it without a traceback.
"""
from __future__ import annotations


class NetgrowError(Exception):
    """Base class for errors raised by netgrow."""


class SpecError(NetgrowError, ValueError):
    """A job spec (or part of it) is invalid.

    ``field`` is a dotted path into the spec (``model.layers[2]``); ``message``
    says what is wrong and what a valid value looks like.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ArgumentError(ValueError):
    """A bad argument to a library object, named as its signature spells it (``Invalid lr: -1``).

    Optimizers raise it; the job format translates ``argument`` into the dotted
    spec field it came from (``train.lr``), see ``growth.methods.Method``.
    """

    def __init__(self, argument: str, value: object, requirement: str) -> None:
        self.argument = argument
        self.value = value
        self.requirement = requirement
        super().__init__(f"Invalid {argument}: {value!r} ({requirement})")


class DataError(SpecError):
    """A dataset could not be read (missing folder, malformed file)."""


class DatasetTooLarge(DataError):
    """A dataset that would expand past a size limit (a server answers 413)."""


class Interrupted(NetgrowError):
    """A run stopped early because ``should_stop()`` returned True.

    Raised at a batch boundary; everything reported through ``on_event`` before
    it (epochs, checkpoints) stays valid and a later run can resume from the
    last checkpoint.
    """

    def __init__(self, epoch: int, message: str = "stopped on request") -> None:
        self.epoch = epoch
        super().__init__(message)
