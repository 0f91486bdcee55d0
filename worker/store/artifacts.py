"""Where a job's files live in the artifact store, and how final weights are written.

    <artifact_dir>/<job id>/checkpoints/attempt-<n>/epoch-<e>.pt   (growth's own format)
    <artifact_dir>/<job id>/checkpoints/attempt-<n>/weights.safetensors   (staged by that attempt)
    <artifact_dir>/<job id>/weights.safetensors
    <artifact_dir>/<job id>/model.onnx   (exported on first request, worker/store/onnx_export.py)

Each attempt checkpoints into its own folder: a worker that lost its lease but
still runs for a moment cannot delete the checkpoint the next attempt resumes
from (growth keeps only the last two files of a folder). It writes its final
weights there too, and only a successful, lease-checked finish
(``jobs.finish_job``) moves them to the job's weights path, so a worker that
lost its lease cannot replace the weights another attempt finished with.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size: int
    sha256: str


def job_dir(artifact_dir: Path, job_id: uuid.UUID) -> Path:
    return Path(artifact_dir).resolve() / str(job_id)


def checkpoint_dir(artifact_dir: Path, job_id: uuid.UUID, attempt: int) -> Path:
    return job_dir(artifact_dir, job_id) / "checkpoints" / f"attempt-{attempt}"


def weights_path(artifact_dir: Path, job_id: uuid.UUID) -> Path:
    return job_dir(artifact_dir, job_id) / WEIGHTS_FILE


def onnx_path(artifact_dir: Path, job_id: uuid.UUID) -> Path:
    return job_dir(artifact_dir, job_id) / ONNX_FILE


def staged_weights_path(artifact_dir: Path, job_id: uuid.UUID, attempt: int) -> Path:
    """Where an attempt writes its final weights before it finishes.

    Attempt numbers of attempts that can run at once differ: a claim counts one
    up, and only the lease holder hands its number back (when it stops).
    """
    return checkpoint_dir(artifact_dir, job_id, attempt) / WEIGHTS_FILE


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path: Path) -> StoredFile:
    path = Path(path)
    return StoredFile(path=path, size=path.stat().st_size, sha256=sha256_file(path))


def write_weights(state_dict_file: Path, destination: Path, model_spec: dict[str, Any],
                  preprocessing: dict[str, Any] | None = None) -> StoredFile:
    """Convert growth's final ``state_dict`` (a torch file) into safetensors at ``destination``.

    The model spec goes into the safetensors metadata, so the file alone rebuilds
    the network: ``growth.models.build_model(json.loads(metadata["model"]))``.
    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    state = torch.load(state_dict_file, map_location="cpu", weights_only=True)
    tensors = {name: tensor.contiguous() for name, tensor in state.items()}
    metadata = {"model": json.dumps(model_spec, sort_keys=True), "format": "netgrow"}
    if preprocessing is not None:  # input shape and normalisation: what an ONNX export bakes in
        metadata["preprocessing"] = json.dumps(preprocessing, sort_keys=True)
    content = canonical_safetensors(save(tensors, metadata=metadata))
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".tmp")
    # A plain open() like torch.save's for checkpoints: the mode follows the umask (safetensors' own
    # save_file creates 0600 files, which an API running as another user cannot serve).
    with open(temporary, "wb") as handle:
        handle.write(content)
    os.replace(temporary, destination)
    return describe(destination)


def canonical_safetensors(content: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted, so equal tensors give equal bytes.

    safetensors writes the ``__metadata__`` map in hash order, which varies
    between calls; the data offsets are relative to the end of the header, so
    rewriting the header (padded to 8 bytes, as the format asks) moves nothing else.
    """
    length = int.from_bytes(content[:8], "little")
    header = json.loads(content[8:8 + length])
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + content[8 + length:]


def publish(staged: StoredFile, destination: Path) -> StoredFile:
    """Move a staged file to its final place (one rename: a reader sees the old file or the new one)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged.path, destination)
    return StoredFile(path=destination, size=staged.size, sha256=staged.sha256)


def remove_other_attempts(artifact_dir: Path, job_id: uuid.UUID, keep: Path | None) -> None:
    """Delete the checkpoint folders of earlier attempts once a job is over (``keep`` holds the last one)."""
    root = job_dir(artifact_dir, job_id) / "checkpoints"
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if keep is None or folder.resolve() != Path(keep).resolve().parent:
            shutil.rmtree(folder, ignore_errors=True)
