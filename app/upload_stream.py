"""Receiving one uploaded file from a multipart body, streamed to disk as it arrives.

``receive_file`` parses ``multipart/form-data`` with python-multipart's
streaming parser, writes the ``file`` field's bytes to a fresh file in a
staging folder while hashing them (sha256), and stops with 413 as soon as the
file passes the server's limit: the body is never held in memory, and a
failed upload leaves no file behind.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

FIELD = "file"
CONTENT_TOO_LARGE = 413  # Starlette renamed its constant (HTTP_413_CONTENT_TOO_LARGE) in versions we still allow
MAX_HEADER_BYTES = 16 << 10  # a part's headers; the file itself is bounded by max_bytes


class UploadRefused(HTTPException):
    """A malformed or oversized upload: ``status_code`` 400, 413 or 415, ``detail`` naming the fix."""


@dataclass(frozen=True)
class ReceivedFile:
    path: Path
    size: int
    sha256: str
    filename: str


def _too_large(limit: int) -> UploadRefused:
    return UploadRefused(CONTENT_TOO_LARGE,
                         f"the uploaded file is larger than this server's limit of {_size(limit)} "
                         f"(NETGROW_MAX_UPLOAD_BYTES): upload fewer or smaller images")


async def receive_file(request: Request, staging: Path, max_bytes: int) -> ReceivedFile:
    """Stream the request's ``file`` field into ``staging``; raises ``UploadRefused`` (nothing kept then)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadRefused(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "send the dataset as multipart/form-data with the file in the field 'file' "
                            "(curl -F file=@data.npz …)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + MAX_HEADER_BYTES:
        raise _too_large(max_bytes)

    staging.mkdir(parents=True, exist_ok=True)
    state = _PartState(staging / f"{uuid.uuid4().hex}.part", max_bytes)
    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": state.part_begin,
        "on_header_field": state.header_field,
        "on_header_value": state.header_value,
        "on_header_end": state.header_end,
        "on_headers_finished": state.headers_finished,
        "on_part_data": state.part_data,
        "on_part_end": state.part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if state.pending:
                await run_in_threadpool(state.flush)
        parser.finalize()
        await run_in_threadpool(state.flush)
        if not state.done:
            raise UploadRefused(status.HTTP_400_BAD_REQUEST,
                                "the request has no complete field named 'file': send the dataset as "
                                "multipart/form-data with the file in the field 'file'")
        await run_in_threadpool(state.close)
    except UploadRefused:
        state.discard()
        raise
    except Exception as exc:
        state.discard()
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        if isinstance(exc, HTTPException) and exc.status_code == CONTENT_TOO_LARGE:
            raise _too_large(max_bytes) from exc
        raise UploadRefused(status.HTTP_400_BAD_REQUEST,
                            f"the multipart body cannot be read ({detail}); send the file in the field 'file'") from exc
    return ReceivedFile(path=state.path, size=state.size, sha256=state.digest.hexdigest(),
                        filename=state.filename or "")


class _PartState:
    """Parser callbacks: collect headers, buffer the file field's data, write it between network reads."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.digest = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.done = False
        self.pending: list[bytes] = []
        self._handle: IO[bytes] | None = None
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._in_file = False

    def part_begin(self) -> None:
        self._headers, self._header_bytes, self._in_file = {}, 0, False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != FIELD.encode():
            return  # another field: ignored
        if self.done or self._in_file:
            raise UploadRefused(status.HTTP_400_BAD_REQUEST, "send one file per upload in the field 'file'")
        self._in_file = True
        self.filename = os.path.basename(options.get(b"filename", b"").decode("utf-8", "replace").replace("\\", "/"))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise _too_large(self.max_bytes)
        chunk = bytes(data[start:end])
        self.digest.update(chunk)
        self.pending.append(chunk)

    def part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.done = True

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise UploadRefused(status.HTTP_400_BAD_REQUEST, "a part's headers are too long")

    def flush(self) -> None:
        if self._handle is None:
            self._handle = open(self.path, "xb")  # noqa: SIM115 (closed in close/discard)
        chunks, self.pending = self.pending, []
        for chunk in chunks:
            self._handle.write(chunk)

    def close(self) -> None:
        if self._handle is None:
            self.flush()
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def discard(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
        self.path.unlink(missing_ok=True)


def _size(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"
