"""Safe extraction of untrusted archives: round trips per format and one test per refusal.

Archives are crafted here with tarfile/zipfile or raw bytes. Every refusal also checks that
nothing was written outside the destination folder.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import struct
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest

from datastore.creation.sources.local import LocalFile, walk
from datastore.creation.sources.safe_extract import CHUNK, FORMATS, ExtractSummary, check_suffix, detect_format, extract
from datastore.errors import ArchiveInvalid, UnsafeArchive
from datastore.model.manifest import Skipped

MiB = 1024 * 1024
SRC = "https://example.test/data"
BIG = 1 << 40  # caps that never bite
TAR_FORMATS = [f for f in FORMATS if f != "zip"]
TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}

# A member spec: (kind, name, payload, mode) where payload is the bytes of a file or the target
# of a link. Kinds: file, dir, symlink, hardlink (tar only), char, fifo.
Spec = tuple[str, str, object, int]


def f(name: str, data: bytes = b"", mode: int = 0o644) -> Spec:
    return ("file", name, data, mode)


def d(name: str) -> Spec:
    return ("dir", name, b"", 0o755)


def sym(name: str, target: str) -> Spec:
    return ("symlink", name, target, 0o777)


def hard(name: str, target: str) -> Spec:
    return ("hardlink", name, target, 0o644)


def write_tar(path: Path, fmt: str, specs: list[Spec]) -> Path:
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}
    with tarfile.open(path, TAR_MODES[fmt], format=tarfile.PAX_FORMAT) as tf:
        for kind, name, payload, mode in specs:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            info.mode = mode
            if kind == "file":
                info.size = len(payload)  # type: ignore[arg-type]
                tf.addfile(info, io.BytesIO(payload))  # type: ignore[arg-type]
            else:
                info.linkname = payload if isinstance(payload, str) else ""
                tf.addfile(info)
    return path


def write_zip(path: Path, specs: list[Spec]) -> Path:
    file_types = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK,
                  "char": stat.S_IFCHR, "fifo": stat.S_IFIFO}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests need
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for kind, name, payload, mode in specs:
                info = zipfile.ZipInfo(name + "/" if kind == "dir" and not name.endswith("/") else name)
                info.external_attr = (file_types[kind] | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                data = payload.encode() if isinstance(payload, str) else payload
                zf.writestr(info, data)  # type: ignore[arg-type]
    return path


def build(tmp_path: Path, fmt: str, specs: list[Spec]) -> Path:
    path = tmp_path / ("archive." + fmt)
    return write_zip(path, specs) if fmt == "zip" else write_tar(path, fmt, specs)


def dest_of(tmp_path: Path) -> Path:
    # dest sits one level down in "box", so a "../evil" escape would land visibly next to it.
    return tmp_path / "box" / "dest"


def run(tmp_path: Path, archive: Path, fmt: str | None = None, max_bytes: int = BIG,
        max_ratio: int = 1000, max_members: int = 10_000_000) -> ExtractSummary:
    fmt = fmt or detect_format(archive, SRC)
    return extract(archive, dest_of(tmp_path), fmt, SRC, max_bytes, max_ratio, max_members)


def assert_contained(tmp_path: Path) -> None:
    """Nothing but dest in its box, nothing new next to the archive, no link leading out."""
    assert os.listdir(tmp_path / "box") == ["dest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["box", *[p.name for p in tmp_path.glob("archive*")]])
    dest = os.path.realpath(dest_of(tmp_path))
    for top, dirs, files in os.walk(dest):
        for name in dirs + files:
            p = os.path.join(top, name)
            if os.path.islink(p):
                assert os.path.realpath(p).startswith(dest + os.sep) or os.path.realpath(p) == dest


def refused(tmp_path: Path, fmt: str, specs: list[Spec], **caps: int) -> UnsafeArchive:
    archive = build(tmp_path, fmt, specs)
    with pytest.raises(UnsafeArchive) as info:
        run(tmp_path, archive, fmt, **caps)
    assert_contained(tmp_path)
    return info.value


def assert_refusal(err: UnsafeArchive, member: str, rule: str) -> None:
    assert (err.member, err.rule) == (member, rule)
    assert err.message == f"archive member {member!r} refused: {rule}"


def invalid(tmp_path: Path, archive: Path, fmt: str) -> ArchiveInvalid:
    with pytest.raises(ArchiveInvalid) as info:
        run(tmp_path, archive, fmt)
    return info.value


# --- round trips -----------------------------------------------------------------------------


def tree_specs(fmt: str) -> list[Spec]:
    specs = [
        d("top"),
        f("top/a.txt", b"alpha"),
        f("top/nested/deeper/b.bin", bytes(range(256)) * 10),
        f("top/empty", b""),
        f("top/été/naïve-日本.txt", b"unicode"),
        f("top/run.sh", b"#!/bin/sh\n", 0o4755),  # setuid must be dropped, exec kept
        f("top/setgid-plain", b"x", 0o2644),
        d("top/emptydir"),
        sym("top/link-to-file", "a.txt"),
        sym("top/link-to-dir", "nested"),
        sym("top/nested/deeper/up", "../../a.txt"),
    ]
    if fmt != "zip":
        specs.append(hard("top/hard", "top/a.txt"))
    return specs


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    archive = build(tmp_path, fmt, tree_specs(fmt))
    assert detect_format(archive, SRC) == fmt
    summary = run(tmp_path, archive)
    top = dest_of(tmp_path) / "top"

    assert (top / "a.txt").read_bytes() == b"alpha"
    assert (top / "nested/deeper/b.bin").read_bytes() == bytes(range(256)) * 10
    assert (top / "empty").read_bytes() == b""
    assert (top / "été/naïve-日本.txt").read_bytes() == b"unicode"
    assert stat.S_IMODE((top / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((top / "setgid-plain").stat().st_mode) == 0o644
    assert stat.S_IMODE((top / "nested").stat().st_mode) == 0o755
    assert (top / "emptydir").is_dir()
    assert os.readlink(top / "link-to-file") == "a.txt"
    assert os.readlink(top / "link-to-dir") == "nested"
    assert os.readlink(top / "nested/deeper/up") == "../../a.txt"
    hard_links = 1 if fmt != "zip" else 0
    if hard_links:
        assert not (top / "hard").is_symlink() and (top / "hard").read_bytes() == b"alpha"
        assert (top / "hard").stat().st_ino != (top / "a.txt").stat().st_ino  # a copy, not os.link
    files = 6 + hard_links
    assert summary == ExtractSummary(files=files, bytes=5 + 2560 + 7 + 10 + 1 + 5 * hard_links, links=3)

    # The local walk that ingests dest follows links to files and skips links to folders.
    items = {i.path: i for i in walk(dest_of(tmp_path))}
    assert isinstance(items["top/link-to-file"], LocalFile) and items["top/link-to-file"].size == 5
    assert isinstance(items["top/nested/deeper/up"], LocalFile)
    assert items["top/link-to-dir"] == Skipped("top/link-to-dir", "symlink to a directory (not followed)")
    assert_contained(tmp_path)


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_names_are_normalised_and_dirs_may_repeat(tmp_path: Path, fmt: str) -> None:
    archive = build(tmp_path, fmt, [d("./"), f("./a//b", b"1"), d("a/"), d("a"), f("c/d", b"2"), d("c")])
    summary = run(tmp_path, archive)
    assert (dest_of(tmp_path) / "a/b").read_bytes() == b"1"
    assert (dest_of(tmp_path) / "c/d").read_bytes() == b"2"
    assert summary.files == 2


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_archive_without_files_is_not_an_error(tmp_path: Path, fmt: str) -> None:
    archive = build(tmp_path, fmt, [d("only"), d("only/dirs")])
    assert run(tmp_path, archive) == ExtractSummary(files=0, bytes=0, links=0)
    assert (dest_of(tmp_path) / "only/dirs").is_dir()


def test_empty_zip_is_detected_and_holds_nothing(tmp_path: Path) -> None:
    archive = build(tmp_path, "zip", [])
    assert archive.read_bytes().startswith(b"PK\x05\x06")
    assert run(tmp_path, archive) == ExtractSummary(files=0, bytes=0, links=0)


def test_small_archive_may_exceed_the_ratio_below_one_mib(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar.gz", [f("zeros", bytes(512 * 1024))])
    assert run(tmp_path, archive, max_ratio=2).bytes == 512 * 1024


def test_zip_utf8_name_without_the_utf8_flag(tmp_path: Path) -> None:
    # Written with a plain ASCII placeholder, then the UTF-8 bytes patched in without flag 0x800.
    archive = write_zip(tmp_path / "archive.zip", [f("XX.txt", b"1")])
    archive.write_bytes(archive.read_bytes().replace(b"XX.txt", "é.txt".encode()))
    run(tmp_path, archive)
    assert (dest_of(tmp_path) / "é.txt").read_bytes() == b"1"


# --- refusals: names -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_zip_slip(tmp_path: Path, fmt: str) -> None:
    err = refused(tmp_path, fmt, [f("ok", b"1"), f("../evil", b"x")])
    assert_refusal(err, "../evil", "the name contains a '..' segment")
    assert not (tmp_path / "box" / "evil").exists()


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_inner_dotdot(tmp_path: Path, fmt: str) -> None:
    assert_refusal(refused(tmp_path, fmt, [f("a/../b", b"x")]), "a/../b", "the name contains a '..' segment")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("name", ["/etc/x", "//etc/x"])
def test_refuses_absolute_name(tmp_path: Path, fmt: str, name: str) -> None:
    assert_refusal(refused(tmp_path, fmt, [f(name, b"x")]), name, "the name is an absolute path")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("name", ["C:x", "C:/x", "c:evil.txt"])
def test_refuses_drive_letter(tmp_path: Path, fmt: str, name: str) -> None:
    assert_refusal(refused(tmp_path, fmt, [f(name, b"x")]), name, "the name starts with a Windows drive letter")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("name", ["..\\evil", "a\\b", "C:\\x"])
def test_refuses_backslash(tmp_path: Path, fmt: str, name: str) -> None:
    assert_refusal(refused(tmp_path, fmt, [f(name, b"x")]), name, "the name contains a backslash")


def test_refuses_nul_in_zip_name(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "archive.zip", [f("a_b", b"x")])
    archive.write_bytes(archive.read_bytes().replace(b"a_b", b"a\x00b"))
    with pytest.raises(UnsafeArchive) as info:
        run(tmp_path, archive, "zip")
    assert_refusal(info.value, "a\x00b", "the name contains a NUL byte")
    assert_contained(tmp_path)


def test_refuses_non_utf8_tar_name(tmp_path: Path) -> None:
    archive = tmp_path / "archive.tar"
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tf:
        info = tarfile.TarInfo("caf\xe9")  # stored as the single byte 0xE9
        tf.addfile(info, io.BytesIO())
    with pytest.raises(UnsafeArchive) as err:
        run(tmp_path, archive)
    assert_refusal(err.value, "caf\ufffd", "the name is not valid UTF-8")
    assert_contained(tmp_path)


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_empty_name(tmp_path: Path, fmt: str) -> None:
    assert_refusal(refused(tmp_path, fmt, [f("./", b"x")] if fmt == "tar" else [f(".", b"x")]),
                   "./" if fmt == "tar" else ".", "the name is empty")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_duplicate_name(tmp_path: Path, fmt: str) -> None:
    err = refused(tmp_path, fmt, [f("dir/a.txt", b"1"), f("dir//./a.txt", b"2")])
    assert_refusal(err, "dir//./a.txt", "duplicate name")
    assert (dest_of(tmp_path) / "dir/a.txt").read_bytes() == b"1"  # the first was not overwritten


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_file_over_a_folder(tmp_path: Path, fmt: str) -> None:
    assert_refusal(refused(tmp_path, fmt, [f("a/b", b"1"), f("a", b"2")]), "a",
                   "a file and a folder cannot share the path 'a' (earlier members are below 'a/')")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_file_below_a_file(tmp_path: Path, fmt: str) -> None:
    assert_refusal(refused(tmp_path, fmt, [f("a", b"1"), f("a/b", b"2")]), "a/b",
                   "a file and a folder cannot share the path 'a' (an earlier member is the file 'a')")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_folder_member_over_a_file(tmp_path: Path, fmt: str) -> None:
    member = "a/" if fmt == "zip" else "a"  # tarfile drops a folder's trailing '/'
    assert_refusal(refused(tmp_path, fmt, [f("a", b"1"), d("a/")]), member,
                   "a file and a folder cannot share the path 'a' (an earlier member is the file 'a')")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_nfc_nfd_collision(tmp_path: Path, fmt: str) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    err = refused(tmp_path, fmt, [f(composed, b"1"), f(decomposed, b"2")])
    assert_refusal(err, decomposed, f"collides with {composed!r} after Unicode normalization")


def test_refuses_nfc_collision_of_a_parent_folder(tmp_path: Path) -> None:
    err = refused(tmp_path, "tar", [f("\u00e9/a", b"1"), f("e\u0301/b", b"2")])
    assert_refusal(err, "e\u0301/b", "collides with '\u00e9' after Unicode normalization")


# --- refusals: links -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("target", ["../../x", "../../../x", "/etc/passwd", "../a/../../x"])
def test_refuses_symlink_escape(tmp_path: Path, fmt: str, target: str) -> None:
    err = refused(tmp_path, fmt, [f("a/file", b"1"), sym("a/link", target)])
    assert_refusal(err, "a/link", "link points outside the archive")
    assert not (dest_of(tmp_path) / "a/link").is_symlink()


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_symlink_escape_through_another_link(tmp_path: Path, fmt: str) -> None:
    # Lexically "s/../secret" is "secret", but s points at the root, so the kernel would leave it.
    err = refused(tmp_path, fmt, [sym("s", "."), sym("t", "s/../secret")])
    assert_refusal(err, "t", "link points outside the archive")
    assert not any(p.is_symlink() for p in dest_of(tmp_path).iterdir())


def test_refuses_symlink_escape_via_a_link_created_later(tmp_path: Path) -> None:
    err = refused(tmp_path, "tar", [d("d"), sym("t", "d/s/../../x"), sym("d/s", "..")])
    assert_refusal(err, "t", "link points outside the archive")


def test_refuses_symlink_loop(tmp_path: Path) -> None:
    err = refused(tmp_path, "tar", [sym("a", "b"), sym("b", "a")])
    assert_refusal(err, "a", "link is part of a loop (or of a chain of more than 40 links)")


def test_refuses_symlink_below_a_file(tmp_path: Path) -> None:
    err = refused(tmp_path, "tar", [f("file", b"1"), sym("l", "file/x")])
    assert_refusal(err, "l", "link goes through a file")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_write_through_an_earlier_symlink(tmp_path: Path, fmt: str) -> None:
    err = refused(tmp_path, fmt, [d("sub"), sym("l", "sub"), f("l/x", b"evil")])
    assert_refusal(err, "l/x", "a path component is a link")
    assert not (dest_of(tmp_path) / "sub/x").exists()


def test_refuses_hardlink_escape(tmp_path: Path) -> None:
    err = refused(tmp_path, "tar", [hard("h", "../../etc/passwd")])
    assert_refusal(err, "h", "hard link points outside the archive")


def test_refuses_absolute_hardlink(tmp_path: Path) -> None:
    assert_refusal(refused(tmp_path, "tar", [hard("h", "/etc/passwd")]), "h", "hard link points outside the archive")


def test_refuses_hardlink_to_a_later_or_missing_file(tmp_path: Path) -> None:
    err = refused(tmp_path, "tar", [hard("h", "later"), f("later", b"1")])
    assert_refusal(err, "h", "hard link to 'later' which is not an earlier file of the archive")


def test_refuses_hardlink_to_a_symlink(tmp_path: Path) -> None:
    err = refused(tmp_path, "tar", [f("a", b"1"), sym("s", "a"), hard("h", "s")])
    assert_refusal(err, "h", "hard link to 's' which is not an earlier file of the archive")


# --- refusals: special files -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_device_file(tmp_path: Path, fmt: str) -> None:
    err = refused(tmp_path, fmt, [("char", "dev/null", b"", 0o666)])
    assert_refusal(err, "dev/null", "device files, FIFOs and sockets are not allowed")


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_refuses_fifo(tmp_path: Path, fmt: str) -> None:
    err = refused(tmp_path, fmt, [("fifo", "pipe", b"", 0o644)])
    assert_refusal(err, "pipe", "device files, FIFOs and sockets are not allowed")


# --- refusals: size caps and bombs -----------------------------------------------------------


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_gzip_bomb_stops_at_the_byte_cap(tmp_path: Path) -> None:
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("zeros")
        info.size = 50 * MiB
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(UnsafeArchive) as err:
        run(tmp_path, archive, max_bytes=10 * MiB, max_ratio=10**9)
    assert_refusal(err.value, "zeros", f"the archive expands beyond DATASTORE_MAX_EXTRACTED_BYTES ({10 * MiB} bytes)")
    assert tree_bytes(dest_of(tmp_path)) < 10 * MiB + CHUNK
    assert_contained(tmp_path)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_member_count_cap(tmp_path: Path, kind: str) -> None:
    # Five empty files in a folder: six entries. Empty members pass every byte cap.
    archive = build(tmp_path, kind, [f(f"many/e{i}", b"") for i in range(5)])
    assert run(tmp_path, archive, max_members=6).files == 5
    shutil.rmtree(dest_of(tmp_path))
    with pytest.raises(UnsafeArchive) as info:
        run(tmp_path, archive, max_members=5)
    assert_refusal(info.value, "many/e4", "the archive has more than DATASTORE_MAX_ARCHIVE_MEMBERS (5) entries")
    assert_contained(tmp_path)


def test_ratio_cap(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar.gz", [f("small", b"1"), f("zeros", bytes(3 * MiB))])
    with pytest.raises(UnsafeArchive) as info:
        run(tmp_path, archive, max_ratio=10)
    assert_refusal(info.value, "zeros", "the archive expands more than DATASTORE_MAX_EXTRACT_RATIO (10x) its size")
    assert tree_bytes(dest_of(tmp_path)) <= 10 * archive.stat().st_size + CHUNK


def test_byte_cap_counts_hardlink_copies(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar", [f("a", bytes(600 * 1024)), hard("b", "a")])
    with pytest.raises(UnsafeArchive) as info:
        run(tmp_path, archive, max_bytes=MiB)
    assert_refusal(info.value, "b", f"the archive expands beyond DATASTORE_MAX_EXTRACTED_BYTES ({MiB} bytes)")


def zip_with_two_entries_at(tmp_path: Path, second_offset: int) -> Path:
    """A zip of "a" plus a central-directory entry "b" whose local header is at ``second_offset``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a", b"x" * 100)
    raw = buf.getvalue()
    eocd = raw.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<II", raw[eocd + 12:eocd + 20])
    central = raw[cd_offset:cd_offset + cd_size]
    second = central[:42] + struct.pack("<I", second_offset) + b"b" + central[47:]
    tail = bytearray(raw[eocd:])
    struct.pack_into("<HHI", tail, 8, 2, 2, 2 * cd_size)
    path = tmp_path / "archive.zip"
    path.write_bytes(raw[:cd_offset] + central + second + bytes(tail))
    return path


@pytest.mark.parametrize("offset", [0, 40], ids=["shared-header", "header-inside-data"])
def test_refuses_overlapping_zip_entries(tmp_path: Path, offset: int) -> None:
    archive = zip_with_two_entries_at(tmp_path, offset)
    with pytest.raises(UnsafeArchive) as info:
        run(tmp_path, archive)
    assert_refusal(info.value, "b", "overlaps another entry's data (a zip bomb)")
    assert os.listdir(dest_of(tmp_path)) == []  # refused before anything was written


# --- corrupt input and detection -------------------------------------------------------------


def test_truncated_tar_gz(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar.gz", [f("random", os.urandom(200_000))])
    archive.write_bytes(archive.read_bytes()[:100_000])
    assert detect_format(archive, SRC) == "tar.gz"  # the head still looks fine
    err = invalid(tmp_path, archive, "tar.gz")
    assert err.reason.startswith("truncated or corrupt archive: ")
    assert err.message.startswith(f"{SRC!r} is not a usable archive: truncated or corrupt archive")


def test_damaged_tar_header_after_the_first_member(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar", [f("a", b"1"), f("b", b"2")])
    raw = bytearray(archive.read_bytes())
    second = raw.index(b"ustar", 600) - 257
    raw[second + 148:second + 156] = b"0000000\x00"  # a wrong checksum
    archive.write_bytes(bytes(raw))
    err = invalid(tmp_path, archive, "tar")
    assert err.reason.startswith("truncated or corrupt archive: damaged member header")


def test_truncated_zip(tmp_path: Path) -> None:
    archive = build(tmp_path, "zip", [f("random", os.urandom(50_000))])
    archive.write_bytes(archive.read_bytes()[:25_000])
    assert detect_format(archive, SRC) == "zip"
    err = invalid(tmp_path, archive, "zip")
    assert err.reason == "truncated or corrupt zip: File is not a zip file"


def test_zip_with_bad_crc(tmp_path: Path) -> None:
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a", b"hello world")
    archive.write_bytes(archive.read_bytes().replace(b"hello world", b"hello WORLD"))
    err = invalid(tmp_path, archive, "zip")
    assert err.reason == "truncated or corrupt zip: Bad CRC-32 for file 'a'"


@pytest.mark.parametrize("body, what", [
    (b"<!DOCTYPE html>\n<html><body>Not found</body></html>", "an HTML page"),
    (b"  <html><head></head></html>", "an HTML page"),
    (b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "an XML document"),
    (b'{"error": "nope"}', "a JSON document"),
    (b"\x00\x01\x02garbage", "10 bytes of unknown data"),
])
def test_detect_refuses_what_is_not_an_archive(tmp_path: Path, body: bytes, what: str) -> None:
    path = tmp_path / "download"
    path.write_bytes(body)
    with pytest.raises(ArchiveInvalid) as info:
        detect_format(path, SRC)
    assert info.value.reason == f"the server sent {what}, not an archive"


def test_detect_refuses_empty_download(tmp_path: Path) -> None:
    path = tmp_path / "download"
    path.write_bytes(b"")
    with pytest.raises(ArchiveInvalid) as info:
        detect_format(path, SRC)
    assert info.value.reason == "the download is empty"
    assert info.value.message == f"{SRC!r} is not a usable archive: the download is empty"


def test_detect_refuses_bare_gz_of_a_non_tar(tmp_path: Path) -> None:
    path = tmp_path / "data.gz"
    path.write_bytes(gzip.compress(b"just,some,csv\n" * 100))
    with pytest.raises(ArchiveInvalid) as info:
        detect_format(path, SRC)
    assert info.value.reason == "a compressed file that is not a tar archive"


def test_detect_plain_tar_whose_first_name_looks_like_bzip2(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar", [f("BZh91AY&SY", b"1")])
    assert detect_format(archive, SRC) == "tar"


def test_suffix_mismatch(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar.gz", [f("a", b"1")])
    fmt = detect_format(archive, SRC)
    with pytest.raises(ArchiveInvalid) as info:
        check_suffix("/files/data.zip", fmt, SRC)
    assert info.value.reason == "the URL says '.zip' but the bytes are a tar.gz archive"
    assert info.value.hint == "fix the URL or the file on the server"


@pytest.mark.parametrize("path, fmt", [
    ("/d/x.zip", "zip"), ("/d/x.ZIP", "zip"), ("/d/x.tar.gz", "tar.gz"), ("/d/x.TGZ", "tar.gz"),
    ("/d/x.tar", "tar"), ("/d/x.tar.bz2", "tar.bz2"), ("/d/x.tbz2", "tar.bz2"), ("/d/x.tar.xz", "tar.xz"),
    ("/d/x.txz", "tar.xz"), ("/download", "zip"), ("/d/x.gz", "tar.gz"), ("/", "tar"),
])
def test_suffix_agreeing_or_unknown_is_accepted(path: str, fmt: str) -> None:
    check_suffix(path, fmt, SRC)


def test_suffix_mismatch_keeps_the_url_spelling() -> None:
    with pytest.raises(ArchiveInvalid) as info:
        check_suffix("/x.TAR.GZ", "zip", SRC)
    assert info.value.reason == "the URL says '.TAR.GZ' but the bytes are a zip archive"


def test_destination_must_be_empty(tmp_path: Path) -> None:
    archive = build(tmp_path, "tar", [f("a", b"1")])
    dest_of(tmp_path).mkdir(parents=True)
    (dest_of(tmp_path) / "old").write_bytes(b"")
    with pytest.raises(ValueError, match="not empty"):
        run(tmp_path, archive)


@pytest.mark.parametrize("tar_format, extra", [
    (tarfile.GNU_FORMAT, {}),
    (tarfile.PAX_FORMAT, {"pax_headers": {"comment": "a global header"}}),
], ids=["gnu-longname", "pax-with-global-header"])
def test_long_names_and_pax_global_headers(tmp_path: Path, tar_format: int, extra: dict) -> None:
    long_name = "d" * 120 + "/" + "f" * 150
    archive = tmp_path / "archive.tar"
    with tarfile.open(archive, "w", format=tar_format, **extra) as tf:
        info = tarfile.TarInfo(long_name)
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    assert run(tmp_path, archive).files == 1
    assert (dest_of(tmp_path) / long_name).read_bytes() == b"abc"
    assert os.listdir(dest_of(tmp_path)) == ["d" * 120]  # the global header left no file behind


def test_multi_member_gzip(tmp_path: Path) -> None:
    plain = build(tmp_path, "tar", [f("a", b"1" * 5000), f("b", b"2")]).read_bytes()
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(gzip.compress(plain[:3000]) + gzip.compress(plain[3000:]))
    assert run(tmp_path, archive).files == 2
    assert (dest_of(tmp_path) / "b").read_bytes() == b"2"
