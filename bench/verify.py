"""Verifiers: after a zero exit, check that a run did its job (counts and bytes, records, trees).

Each returns a short description for the row's check column or raises :class:`VerifyError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from bench.data import MiB
from bench.harness import Measurement, VerifyError, parse_record, tail
from datastore.testing.servers import S3Server

MOUNT_SAMPLE = 64  # mounted files compared byte for byte with the source tree


def verify_record(files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier for ``datastore create --json``: the record's files and bytes must match."""

    def verify(m: Measurement) -> str:
        record = parse_record(m.stdout)
        if record.get("files") != files or record.get("bytes") != nbytes:
            raise VerifyError(f"record says {record.get('files')} files / {record.get('bytes')} bytes, "
                              f"expected {files} / {nbytes}")
        notes = [f"{files} files, {nbytes / MiB:.1f} MiB"]
        uploaded = record.get("bytes_uploaded")
        # A fresh store has nothing to reuse, so every byte must have been uploaded.
        notes.append("uploaded=bytes" if uploaded == nbytes else f"UPLOADED {uploaded} != bytes {nbytes}")
        notes.append(f"in-flow {record.get('duration_s')}s")
        try:
            json.loads(m.stdout)
        except ValueError:
            notes.append("STDOUT NOT PURE JSON")  # --json promises machine-readable stdout
        return ", ".join(notes)

    return verify


def verify_unchanged(files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier for a create from an unchanged source: the next version, the same files and bytes, 0 uploaded."""

    def verify(m: Measurement) -> str:
        record = parse_record(m.stdout)
        if record.get("files") != files or record.get("bytes") != nbytes or record.get("bytes_uploaded") != 0:
            raise VerifyError(f"expected {files} files / {nbytes} bytes with 0 uploaded, got {record.get('files')} / "
                              f"{record.get('bytes')}, {record.get('bytes_uploaded')} uploaded")
        return f"version {record.get('version')}, 0 bytes uploaded, in-flow {record.get('duration_s')}s"

    return verify


def verify_s3(s3: S3Server, bucket: str, prefix: str, files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier that lists ``s3://bucket/prefix`` and compares object count and total size."""

    def verify(m: Measurement) -> str:
        del m
        count = total = 0
        for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                count += 1
                total += obj["Size"]
        if (count, total) != (files, nbytes):
            raise VerifyError(f"s3://{bucket}/{prefix} holds {count} objects / {total} bytes, "
                              f"expected {files} / {nbytes}")
        return f"{count} objects, {total / MiB:.1f} MiB listed"

    return verify


def verify_listing(files: int) -> Callable[[Measurement], str]:
    """A verifier for ``s5cmd ls``: one line per object on stdout, and no ``DIR`` lines."""

    def verify(m: Measurement) -> str:
        lines = [line for line in m.stdout.splitlines() if line.strip()]
        dirs = sum(1 for line in lines if line.split()[0] == "DIR")
        if len(lines) != files or dirs:
            raise VerifyError(f"listed {len(lines)} lines ({dirs} DIR), expected {files} objects")
        return f"{len(lines)} objects listed"

    return verify


def verify_nocopy(files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier for ``datastore create --no-copy --json``: every object referenced, nothing uploaded."""

    def verify(m: Measurement) -> str:
        record = parse_record(m.stdout)
        if record.get("files") != files or record.get("bytes_uploaded") != 0:
            raise VerifyError(f"record says {record.get('files')} files / {record.get('bytes_uploaded')} bytes "
                              f"uploaded, expected {files} / 0")
        notes = [f"{files} files referenced", "uploaded=0"]
        if record.get("bytes") != nbytes:
            notes.append(f"record bytes {record.get('bytes')} != source {nbytes}")
        notes.append(f"in-flow {record.get('duration_s')}s")
        try:
            json.loads(m.stdout)
        except ValueError:
            notes.append("STDOUT NOT PURE JSON")
        return ", ".join(notes)

    return verify


def verify_tree(dst: Path, files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier that walks a local copy and compares file count and total size."""

    def verify(m: Measurement) -> str:
        del m
        count = total = 0
        for dirpath, _, names in os.walk(dst):
            for name in names:
                count += 1
                total += os.path.getsize(os.path.join(dirpath, name))
        if (count, total) != (files, nbytes):
            raise VerifyError(f"{dst} holds {count} files / {total} bytes, expected {files} / {nbytes}")
        return f"{count} files, {total / MiB:.1f} MiB"

    return verify


def _tree_files(root: Path) -> dict[str, int]:
    """Every file under ``root``: path relative to it → size."""
    sizes: dict[str, int] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            sizes[os.path.relpath(path, root)] = os.path.getsize(path)
    return sizes


def verify_mount(dst: Path, src: Path, files: int, nbytes: int) -> Callable[[Measurement], str]:
    """A verifier for ``datastore download``: the written tree has the source tree's paths and sizes
    (hence its file count and bytes), and :data:`MOUNT_SAMPLE` files spread over it have the same
    bytes as their source files."""

    def verify(m: Measurement) -> str:
        del m
        got = _tree_files(dst)
        count, total = len(got), sum(got.values())
        if (count, total) != (files, nbytes):
            raise VerifyError(f"{dst} holds {count} files / {total} bytes, expected {files} / {nbytes}")
        want = _tree_files(src)
        if got != want:
            differ = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want[k])
            raise VerifyError(f"{len(differ)} paths differ from the source tree in name or size, e.g. {differ[0]}")
        paths = sorted(got)
        step = max(1, len(paths) // MOUNT_SAMPLE)
        sample = paths[::step][:MOUNT_SAMPLE] + paths[-1:]
        for rel in sample:
            if (dst / rel).read_bytes() != (src / rel).read_bytes():
                raise VerifyError(f"{rel} differs from the source file")
        notes = [f"{count} files, {total / MiB:.1f} MiB",
                 f"paths+sizes = source, {len(set(sample))} sampled bytes = source"]
        mode = (dst / paths[0]).stat().st_mode & 0o777 if paths else 0
        if mode & 0o222:
            notes.append(f"FILE MODE {mode:o} NOT READ-ONLY")
        return ", ".join(notes)

    return verify


def verify_prints_one(m: Measurement) -> str:
    """The bare flow prints its result, 1."""
    last = m.stdout.strip().splitlines()[-1:] or [""]
    if last[0].strip() != "1":
        raise VerifyError(f"expected the flow to print 1, got {tail(m.stdout)!r}")
    return "returned 1"


def verify_listed(name: str, files: int) -> Callable[[Measurement], str]:
    """A verifier for ``datastore list --json`` / ``show NAME --json``: ``name`` is there with ``files`` files."""

    def verify(m: Measurement) -> str:
        try:
            shown = json.loads(m.stdout)
        except ValueError as exc:
            raise VerifyError(f"not JSON ({exc}): {tail(m.stdout)}") from None
        records = shown if isinstance(shown, list) else [shown]
        found = [r for r in records if r.get("name") == name and r.get("files") == files]
        if not found:
            raise VerifyError(f"no record of {name} with {files:,} files in {tail(m.stdout)}")
        return f"{name} version {found[0].get('version')}: {files:,} files"

    return verify


def verify_prints(text: str) -> Callable[[Measurement], str]:
    """A verifier for a command whose last line of output must be ``text``."""

    def verify(m: Measurement) -> str:
        last = m.stdout.strip().splitlines()[-1:] or [""]
        if last[0].strip() != text:
            raise VerifyError(f"expected {text!r}, got {tail(m.stdout)!r}")
        return "the source's sha256"

    return verify


def verify_scratch_empty(work: Path, inner: Callable[[Measurement], str]) -> Callable[[Measurement], str]:
    """``inner``, then a note on what a create left in its scratch folder (it removes its download
    and extracted tree after committing; lock files of 0 bytes do not count)."""

    def verify(m: Measurement) -> str:
        note = inner(m)
        left = [p for p in work.rglob("*") if p.is_file() and p.stat().st_size]
        if left:
            note += f"; SCRATCH LEFT {len(left)} files, {sum(p.stat().st_size for p in left) / MiB:.1f} MiB"
        return note

    return verify

