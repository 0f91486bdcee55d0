"""Unpacking an uploaded image-folder archive (.zip, .tar, .tar.gz) without trusting it.

An archive names its own paths, sizes and file types, and every one of them
can be hostile: ``../../etc/passwd``, an absolute path, a symbolic or hard link
that points outside the folder (and a later member written through it), a
device file, ten thousand empty names, or a few kilobytes that inflate to
terabytes. ``extract_archive`` refuses all of these before or while writing,
counts the bytes it actually writes (declared sizes can lie), and writes only
regular files and folders into a fresh folder. On any refusal the caller
deletes that folder: nothing half-extracted is kept.
"""
from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from growth.errors import DataError, DatasetTooLarge

_CHUNK = 1 << 20


class ArchiveError(DataError):
    """An archive that is refused: unreadable, unsafe or too large. ``field`` names the upload field."""


class ArchiveTooLarge(ArchiveError, DatasetTooLarge):
    """An archive that would unpack to more bytes or files than this server accepts."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int  # total bytes of the unpacked files
    max_members: int  # files and folders


@dataclass(frozen=True)
class Extracted:
    files: int
    bytes: int


def archive_kind(path: Path) -> str | None:
    """``"zip"``, ``"tar"`` (also gzip/bzip2/xz-compressed tar) or None, from the file's content."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, tarfile.TarError):
        return None
    return None


def extract_archive(archive: Path, destination: Path, limits: ArchiveLimits, *, field: str = "file") -> Extracted:
    """Unpack ``archive`` into ``destination`` (which must not exist yet); raises ``ArchiveError``."""
    kind = archive_kind(archive)
    if kind is None:
        raise ArchiveError(field, "is neither an .npz file nor a .zip or .tar archive of an image folder "
                                  "(unrecognised content)")
    destination.mkdir(parents=False, exist_ok=False)
    writer = _Writer(destination, limits, field)
    if kind == "zip":
        _extract_zip(archive, writer, field)
    else:
        _extract_tar(archive, writer, field)
    return Extracted(files=writer.files, bytes=writer.written)


def safe_member_path(name: str, field: str = "file") -> PurePosixPath:
    """The relative path an archive member may be written to; ``ArchiveError`` for anything that escapes."""
    if "\x00" in name:
        raise ArchiveError(field, f"the archive member {name!r} has a NUL byte in its name; rebuild the archive")
    # Some Windows tools write backslashes: treat them as separators so that '..\\x' is seen for what it is.
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise ArchiveError(field, f"the archive member {name!r} has an absolute path; archive the folder with "
                                  f"relative paths (e.g. `cd data && zip -r ../data.zip .`)")
    if ".." in path.parts:
        raise ArchiveError(field, f"the archive member {name!r} climbs out of the archive with '..'; archive the "
                                  f"folder with plain relative paths")
    parts = [part for part in path.parts if part not in ("", ".")]
    if not parts:
        raise ArchiveError(field, f"the archive member {name!r} has an empty name; rebuild the archive")
    return PurePosixPath(*parts)


class _Writer:
    """Writes members below ``root``, counting files and bytes against the limits as it goes."""

    def __init__(self, root: Path, limits: ArchiveLimits, field: str) -> None:
        self.root = root
        self.limits = limits
        self.field = field
        self.files = 0
        self.written = 0
        self.seen: set[PurePosixPath] = set()

    def _count_member(self, relative: PurePosixPath) -> None:
        if relative in self.seen:
            raise ArchiveError(self.field, f"the archive holds {str(relative)!r} twice; rebuild it with each file once")
        self.seen.add(relative)
        if len(self.seen) > self.limits.max_members:
            raise ArchiveTooLarge(self.field, f"the archive holds more than {self.limits.max_members:,} files and "
                                              f"folders, this server's limit; upload fewer images")

    def check_declared(self, total: int) -> None:
        if total > self.limits.max_bytes:
            raise ArchiveTooLarge(self.field, f"the archive unpacks to {_size(total)}; this server accepts at most "
                                              f"{_size(self.limits.max_bytes)} unpacked: upload fewer or smaller "
                                              f"images")

    def folder(self, relative: PurePosixPath) -> None:
        self._count_member(relative)
        (self.root / relative).mkdir(parents=True, exist_ok=True)

    def file(self, relative: PurePosixPath, source: IO[bytes]) -> None:
        self._count_member(relative)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # A fresh folder holds no links (none is ever written), and O_EXCL|O_NOFOLLOW makes sure of it.
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(descriptor, "wb") as out:
            while chunk := source.read(_CHUNK):
                self.written += len(chunk)
                if self.written > self.limits.max_bytes:
                    raise ArchiveTooLarge(self.field, f"the archive unpacks to more than "
                                                      f"{_size(self.limits.max_bytes)}, this server's limit (a "
                                                      f"compression bomb, or too many images): upload fewer or "
                                                      f"smaller images")
                out.write(chunk)
        self.files += 1


def _extract_zip(archive: Path, writer: _Writer, field: str) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if len(members) > writer.limits.max_members:
                raise ArchiveTooLarge(field, f"the archive holds {len(members):,} files and folders; this server "
                                             f"accepts at most {writer.limits.max_members:,}")
            writer.check_declared(sum(info.file_size for info in members))
            for info in members:
                relative = safe_member_path(info.filename, field)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ArchiveError(field, f"the archive member {info.filename!r} is a symbolic link; archive the "
                                              f"files themselves (zip without -y)")
                # Zip tools that record no file type (Python's writestr, Windows) leave the type bits 0.
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise ArchiveError(field, f"the archive member {info.filename!r} is not a file or folder; "
                                              f"archive only image files")
                if info.flag_bits & 0x1:
                    raise ArchiveError(field, f"the archive member {info.filename!r} is encrypted; upload an "
                                              f"archive without a password")
                if info.is_dir():
                    writer.folder(relative)
                    continue
                with bundle.open(info) as source:
                    writer.file(relative, source)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as exc:
        raise ArchiveError(field, f"the .zip archive cannot be read (truncated or corrupt: {exc}); rebuild and "
                                  f"upload it again") from exc


def _extract_tar(archive: Path, writer: _Writer, field: str) -> None:
    try:
        # Streaming mode ("r|*") reads members in order without seeking back: one pass, bounded memory.
        with tarfile.open(archive, mode="r|*") as bundle:
            declared = 0
            for member in bundle:
                relative = safe_member_path(member.name, field)
                if member.issym() or member.islnk():
                    raise ArchiveError(field, f"the archive member {member.name!r} is a link (to "
                                              f"{member.linkname!r}); archive the files themselves "
                                              f"(tar --dereference)")
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(field, f"the archive member {member.name!r} is a device or special file; "
                                              f"archive only image files")
                if member.isdir():
                    writer.folder(relative)
                    continue
                declared += member.size
                writer.check_declared(declared)
                source = bundle.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have a reader
                    raise ArchiveError(field, f"the archive member {member.name!r} cannot be read")
                with source:
                    writer.file(relative, source)
    except ArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise ArchiveError(field, f"the .tar archive cannot be read (truncated or corrupt: {exc}); rebuild and "
                                  f"upload it again") from exc


def _size(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"
