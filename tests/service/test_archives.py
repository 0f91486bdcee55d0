"""Unpacking uploaded image-folder archives: real .zip/.tar files, and every hostile one refused."""
from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.user_datasets import tar_folder, tar_with, write_digits_folder, zip_folder
from worker.store.archives import ArchiveError, ArchiveLimits, ArchiveTooLarge, extract_archive, safe_member_path

LIMITS = ArchiveLimits(max_bytes=1 << 20, max_members=100)


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("pack", ["zip", "tar", "tar.gz"])
def test_archives_of_an_image_folder_unpack_to_the_same_files(tmp_path: Path, pack: str) -> None:
    write_digits_folder(tmp_path / "src", split=True, classes=(0, 1))
    archive = tmp_path / f"data.{pack}"
    if pack == "zip":
        zip_folder(tmp_path / "src", archive)
    else:
        tar_folder(tmp_path / "src", archive, "w:gz" if pack == "tar.gz" else "w")
    extracted = extract_archive(archive, tmp_path / "out", LIMITS)
    assert files_under(tmp_path / "out") == files_under(tmp_path / "src")
    assert extracted.files == 12 and extracted.bytes == sum(map(len, files_under(tmp_path / "src").values()))


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "..\\evil.png", "/tmp/evil.png", "C:/evil.png"])
def test_member_names_that_escape_are_refused(name: str) -> None:
    with pytest.raises(ArchiveError) as caught:
        safe_member_path(name)
    assert caught.value.field == "file"
    assert ("'..'" in caught.value.message) or ("absolute path" in caught.value.message)


def test_member_names_are_normalised() -> None:
    assert str(safe_member_path("./train//cat/1.png")) == "train/cat/1.png"


def test_zip_with_traversal_writes_nothing_outside(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("cat/ok.png", b"fine")
        bundle.writestr("../escaped.png", b"evil")
    with pytest.raises(ArchiveError, match="climbs out"):
        extract_archive(archive, tmp_path / "box", LIMITS)
    assert not (tmp_path / "escaped.png").exists()


def test_tar_with_traversal_and_absolute_paths(tmp_path: Path) -> None:
    for name in ("../../escaped.png", "/tmp/netgrow-escaped.png"):
        archive = tar_with(tmp_path / "evil.tar", [(tarfile.TarInfo(name), b"evil")])
        with pytest.raises(ArchiveError):
            extract_archive(archive, tmp_path / f"box{len(name)}", LIMITS)
    assert not (tmp_path.parent / "escaped.png").exists()
    assert not Path("/tmp/netgrow-escaped.png").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        info = zipfile.ZipInfo("cat/passwd.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_archive(archive, tmp_path / "box", LIMITS)
    assert not (tmp_path / "box" / "cat" / "passwd.png").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("cat/x.png")
    link.type = kind
    link.linkname = "/etc/passwd"
    # The classic attack: a link, then a file written through it.
    through = tarfile.TarInfo("cat/x.png/../../owned")
    archive = tar_with(tmp_path / "links.tar", [(link, None), (through, b"evil")])
    with pytest.raises(ArchiveError, match="is a link"):
        extract_archive(archive, tmp_path / "box", LIMITS)
    assert not any(p.is_symlink() for p in (tmp_path / "box").rglob("*"))


def test_tar_device_file_is_refused(tmp_path: Path) -> None:
    device = tarfile.TarInfo("cat/null")
    device.type = tarfile.CHRTYPE
    archive = tar_with(tmp_path / "dev.tar", [(device, None)])
    with pytest.raises(ArchiveError, match="device or special file"):
        extract_archive(archive, tmp_path / "box", LIMITS)


def test_zip_bomb_is_refused_from_its_declared_size(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("cat/zeros.png", b"\0" * (50 << 20))
    assert archive.stat().st_size < 200_000
    with pytest.raises(ArchiveTooLarge, match="unpacks to 50.0 MiB"):
        extract_archive(archive, tmp_path / "box", LIMITS)
    assert files_under(tmp_path / "box") == {}


def test_the_sum_of_files_is_bounded_not_each_file(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("cat/a.png", b"\0" * (700 << 10))
        bundle.writestr("cat/b.png", b"\0" * (700 << 10))
    with pytest.raises(ArchiveTooLarge, match="unpacks to 1.4 MiB"):
        extract_archive(archive, tmp_path / "box", LIMITS)


def test_zip_whose_headers_understate_its_size_writes_no_more_than_declared(tmp_path: Path) -> None:
    """A bomb that lies about its size in both headers: it is read only as far as it claims, then refused."""
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("cat/a.png", b"\0" * (8 << 20))
    data = bytearray(archive.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 1000)  # uncompressed size in the local header
    struct.pack_into("<I", data, central + 24, 1000)  # and in the central directory
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract_archive(archive, tmp_path / "box", LIMITS)
    assert sum(len(v) for v in files_under(tmp_path / "box").values()) <= 1000


def test_tar_gz_bomb_is_stopped(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        info = tarfile.TarInfo("cat/zeros.png")
        info.size = 50 << 20
        bundle.addfile(info, io.BytesIO(b"\0" * info.size))
    assert archive.stat().st_size < 200_000
    with pytest.raises(ArchiveTooLarge):
        extract_archive(archive, tmp_path / "box", LIMITS)


def test_too_many_members_and_duplicates(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for i in range(101):
            bundle.writestr(f"cat/{i}.png", b"x")
    with pytest.raises(ArchiveTooLarge, match="at most 100"):
        extract_archive(archive, tmp_path / "box1", LIMITS)

    twice = tmp_path / "twice.tar"
    tar_with(twice, [(tarfile.TarInfo("cat/a.png"), b"1"), (tarfile.TarInfo("cat/a.png"), b"2")])
    with pytest.raises(ArchiveError, match="twice"):
        extract_archive(twice, tmp_path / "box2", LIMITS)


def test_corrupt_and_unknown_archives(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "src", classes=(0, 1))
    archive = zip_folder(tmp_path / "src", tmp_path / "data.zip")
    data = bytearray(archive.read_bytes())
    data[100:140] = bytes(40)  # inside the first member's compressed data
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract_archive(archive, tmp_path / "box1", LIMITS)

    text = tmp_path / "notes.txt"
    text.write_text("hello " * 100)
    with pytest.raises(ArchiveError, match="unrecognised content"):
        extract_archive(text, tmp_path / "box2", LIMITS)
