"""Uploaded datasets on disk: checked completely in a staging folder, then stored by content.

    <data_dir>/uploads/.staging/<random>.part          the bytes as they arrive (app/upload_stream.py)
    <data_dir>/uploads/.staging/<random>/              being checked: data.npz, or images/ unpacked
    <data_dir>/uploads/<owner>/<sha256>/data.npz       stored: an npz dataset
    <data_dir>/uploads/<owner>/<sha256>/images/        stored: an image folder

``<owner>`` is a digest of the owner's name, so one user's datasets are
stored apart from another's and deleting one never touches another's; the
same bytes uploaded twice by one owner are one folder (and one dataset).
A folder reaches its stored place only by one rename after every check
passed; a refused upload's staging files are deleted before the error is
raised.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from growth.data.image_folder import inspect_image_folder
from growth.data.npz import inspect_npz
from growth.data.summary import DatasetSummary
from worker.store.archives import ArchiveLimits, extract_archive

UPLOADS = "uploads"
STAGING = ".staging"
NPZ_FILE = "data.npz"
IMAGES_FOLDER = "images"
FIELD = "file"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


@dataclass(frozen=True)
class UploadLimits:
    max_unpacked_bytes: int  # npz arrays once decompressed, or an archive's files once unpacked
    max_files: int  # files and folders in an archive


@dataclass(frozen=True)
class CheckedUpload:
    """An upload that passed every check, waiting in ``folder`` (staging) to be stored."""

    folder: Path
    format: str  # "npz" | "image_folder"
    summary: DatasetSummary


def uploads_root(data_dir: Path) -> Path:
    return Path(data_dir) / UPLOADS


def staging_dir(data_dir: Path) -> Path:
    return uploads_root(data_dir) / STAGING


def owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode("utf-8")).hexdigest()[:24]


def stored_folder(data_dir: Path, owner: str, sha256: str) -> Path:
    return uploads_root(data_dir) / owner_key(owner) / sha256


def relative_dataset_path(owner: str, sha256: str, format: str) -> str:
    """The stored dataset's path relative to ``data_dir`` (what a job's data spec is localized from)."""
    leaf = NPZ_FILE if format == "npz" else IMAGES_FOLDER
    return f"{UPLOADS}/{owner_key(owner)}/{sha256}/{leaf}"


def looks_like_npz(path: Path, filename: str) -> bool:
    """An npz is a zip of ``.npy`` members; a zip of an image folder is not (whatever its name says)."""
    try:
        with zipfile.ZipFile(path) as bundle:
            names = bundle.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return filename.lower().endswith(".npz")  # not a zip at all: let the npz reader say what is wrong
    return any(name in ("x.npy", "y.npy") for name in names) or filename.lower().endswith(".npz")


def check_upload(received: Path, filename: str, data_dir: Path, limits: UploadLimits) -> CheckedUpload:
    """Check an uploaded file completely (every array or image read) in a staging folder of its own.

    ``received`` is moved into (or unpacked into) that folder and is gone
    afterwards either way. Raises ``DataError`` on the field ``file`` naming
    the problem and its fix; nothing of the upload is left on disk then.
    """
    folder = staging_dir(data_dir) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        if looks_like_npz(received, filename):
            target = folder / NPZ_FILE
            os.replace(received, target)
            summary = inspect_npz(target, max_bytes=limits.max_unpacked_bytes, field=FIELD, full=True)
            return CheckedUpload(folder=folder, format="npz", summary=summary)
        images = folder / IMAGES_FOLDER
        extract_archive(received, images, ArchiveLimits(limits.max_unpacked_bytes, limits.max_files), field=FIELD)
        received.unlink(missing_ok=True)
        root = _single_top_folder(images)
        summary = inspect_image_folder(root, decode=True, field=FIELD)
        if root != images:
            _lift(images, root)
        return CheckedUpload(folder=folder, format="image_folder", summary=summary)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        received.unlink(missing_ok=True)
        raise


def _single_top_folder(images: Path) -> Path:
    """``images/mydata/`` when an archive wraps the dataset in one folder (``zip -r data.zip mydata``)."""
    entries = [p for p in images.iterdir() if not (p.name.startswith(".") or p.name == "__MACOSX")]
    if len(entries) == 1 and entries[0].is_dir():
        inner = [p for p in entries[0].iterdir() if p.is_dir() and not p.name.startswith(".")]
        has_images = any(p.is_file() for p in entries[0].iterdir())
        # A lone class folder would hold images; a wrapper holds class (or train/test) folders.
        if inner and not has_images:
            return entries[0]
    return images


def _lift(images: Path, wrapper: Path) -> None:
    """Make ``images/`` the dataset's root when the archive wrapped it in one folder."""
    temporary = images.with_name(f"{IMAGES_FOLDER}.{uuid.uuid4().hex}")
    os.replace(wrapper, temporary)
    shutil.rmtree(images)
    os.replace(temporary, images)


def publish(checked: CheckedUpload, destination: Path) -> bool:
    """Move a checked upload to its stored place; False (and the staging copy dropped) if it is already there."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(checked.folder, destination)  # fails if another request stored the same bytes first
    except OSError:
        if destination.is_dir():
            shutil.rmtree(checked.folder, ignore_errors=True)
            return False
        raise
    return True


def remove_stored(data_dir: Path, owner: str, sha256: str) -> None:
    """Delete a stored dataset's folder: renamed away first, so no reader sees half of it."""
    folder = stored_folder(data_dir, owner, sha256)
    if not folder.exists():
        return
    doomed = staging_dir(data_dir) / f"deleted-{uuid.uuid4().hex}"
    doomed.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def discard(checked: CheckedUpload) -> None:
    shutil.rmtree(checked.folder, ignore_errors=True)

