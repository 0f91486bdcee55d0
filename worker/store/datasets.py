"""Where a job's on-disk dataset lives: ``data.root`` is a folder inside the server's ``data_dir``.

Over HTTP a user names a dataset folder, never a path on the machine: the
API refuses a root that is absolute or climbs out of ``data_dir``, and each
worker joins the stored (relative) root to its own ``data_dir``, so the same
job runs on any host that mounts the datasets at its own place. A job that
names no root (MNIST and Fashion-MNIST may leave it out) gets the folder
growth's reader finds first, searching this worker's ``data_dir`` before the
system's ``/usr/share/datasets``: the submitting API never looks, since the
worker's machine is the one that must hold the files.
"""
from __future__ import annotations

import copy
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from sqlalchemy.orm import Session

from growth.data.mnist import LAYOUTS, find_default_root
from growth.data.spec import FOUND_WITHOUT_ROOT
from growth.errors import SpecError


def resolve_data_root(root: str, data_dir: Path, field: str = "data.root") -> Path:
    """``data_dir / root`` for a relative ``root`` that stays inside ``data_dir``; ``SpecError`` otherwise."""
    relative = PurePosixPath(root.replace("\\", "/"))
    if relative.is_absolute() or PureWindowsPath(root).anchor:
        raise SpecError(field, f"must be a folder relative to the server's dataset directory, e.g. "
                               f"'cifar-10-batches-py', not the absolute path {root!r}")
    if ".." in relative.parts:
        raise SpecError(field, f"must stay inside the server's dataset directory; {root!r} climbs out of it with '..'")
    # With no absolute path and no '..', only a symbolic link the operator put in data_dir can lead
    # out of it: the operator's choice, not the user's.
    return data_dir / relative


def check_data_root(data: dict[str, Any], data_dir: Path) -> None:
    """Refuse a data spec whose ``root`` is not an existing folder inside ``data_dir`` (no-op without a root)."""
    root = data.get("root")
    if root is None:
        return
    folder = resolve_data_root(root, data_dir)
    try:
        exists = folder.is_dir()
    except OSError as exc:  # a name too long for the file system, a component that cannot be read, ...
        raise SpecError("data.root", f"{_shortened(root)} is not a usable folder name in the server's dataset "
                                     f"directory ({exc.strerror or type(exc).__name__})") from exc
    if not exists:
        available = sorted(p.name for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
        hint = f"folders available: {', '.join(available[:20])}" if available else "the directory holds no folders"
        raise SpecError("data.root", f"no folder {root!r} in the server's dataset directory; {hint}")


def _shortened(root: str, limit: int = 80) -> str:
    """``root`` quoted for an error message: a 5000-character name would drown the message."""
    return repr(root) if len(root) <= limit else f"{root[:limit]!r}... ({len(root)} characters)"


def localize_data_root(spec: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """A copy of a stored job spec whose ``data.root`` points into this worker's ``data_dir``.

    Without a root, a dataset in ``FOUND_WITHOUT_ROOT`` gets the folder that
    ``growth.data.mnist.find_default_root`` finds from this ``data_dir``
    (``DataError`` naming the folders searched and the fix if none).
    """
    data = spec.get("data", {})
    root = data.get("root")
    if root is None:
        if data.get("name") not in FOUND_WITHOUT_ROOT:
            return spec
        found = str(find_default_root(LAYOUTS[data["name"]], data_dir))
    else:
        found = str(resolve_data_root(root, data_dir))
    local = copy.deepcopy(spec)
    local["data"]["root"] = found
    return local


def localize_job_spec(spec: dict[str, Any], data_dir: Path, artifact_dir: Path, session: Session) -> dict[str, Any]:
    """A copy of a stored job spec that this worker's growth library can run.

    ``data.root`` joins this worker's ``data_dir``; an uploaded dataset
    (``{"name": "upload", "id": …}``) becomes its stored file or folder; a
    source job (``init.job``) becomes that job's weights file. A dataset deleted
    since the job was stored fails the job with a message that says so.
    """
    local = localize_data_root(spec, data_dir)
    data = local.get("data", {})
    if data.get("name") == "upload":
        from .models import Dataset

        dataset = session.get(Dataset, uuid.UUID(data["id"]))
        if dataset is None or dataset.sha256 != data.get("sha256"):
            raise SpecError("data.id", f"dataset {data['id']} has been deleted; upload it again and submit a new job")
        local = copy.deepcopy(local)
        common = {key: value for key, value in data.items() if key not in ("name", "id", "sha256", "format")}
        local["data"] = {"name": dataset.format, "path": str(data_dir / dataset.path), **common}
    init = local.get("init")
    if init and init.get("job") and not init.get("weights"):
        from .artifacts import weights_path

        local = copy.deepcopy(local)
        local["init"]["weights"] = str(weights_path(artifact_dir, uuid.UUID(init["job"])))
    return local
