"""A store in a local directory (the embedded default)."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from datastore import failpoints
from datastore.errors import (
    AlreadyExists,
    ObjectNotFound,
    StoreError,
    StoreNotWritable,
)
from datastore.store import layout
from datastore.store.base import BlobWriter, ObjectInfo, Store


class LocalStore(Store):
    """A store in a local directory (the embedded default)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self._tmp = self.root / ".tmp"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _write_error(self, exc: OSError) -> StoreError:
        """The one-line store error for a failed write (full disk, permissions, a file in the way)."""
        from datastore.errors import StoreFull

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Not a permission problem: name the filesystem to free space on, which is often not
            # the store folder itself but a disk or partition above it.
            path = self.root
            while not path.exists() and path != path.parent:
                path = path.parent
            device = None
            try:
                path = path.resolve()
                while not os.path.ismount(path) and path != path.parent:
                    path = path.parent
                import re

                with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
                    for line in mounts:  # "device mountpoint type ...", spaces escaped as \040
                        fields = line.split()
                        if len(fields) > 1 and re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)),
                                                      fields[1]) == str(path):
                            device = fields[0]  # the last one listed is the mount on top
            except OSError:  # no /proc (macOS) or an unreadable parent: the mount point alone
                pass
            where = f"{path} ({device})" if device and device != str(path) else str(path)
            reason = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
            return StoreFull(self.url, reason, where)
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StoreNotWritable(self.url, exc.strerror or str(exc))
        if isinstance(exc, (NotADirectoryError, FileExistsError)) or exc.errno == errno.ENOTDIR:
            return StoreNotWritable(self.url, "a path component is a file, not a directory")
        return StoreError(f"writing to store {self.url!r} failed ({exc})", "check the disk and run the command again")

    def check_writable(self) -> None:
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise self._write_error(exc) from exc

    def reclaim_incomplete(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Temporary files under ``.tmp`` older than ``older_than`` (see :meth:`Store.reclaim_incomplete`)."""
        gone = []
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return []
        for e in entries:
            try:
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < older_than:
                    if not dry_run:
                        os.unlink(e.path)
                    gone.append(f".tmp/{e.name}")
            except FileNotFoundError:
                continue  # finished (published) meanwhile
        return gone

    def _tmpfile(self) -> Path:
        self._tmp.mkdir(parents=True, exist_ok=True)
        return self._tmp / uuid.uuid4().hex

    def _publish(self, tmp: Path, key: str, if_absent: bool) -> None:
        failpoints.hit("store-write")
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if if_absent:
            try:
                os.link(tmp, final)  # atomic, fails if taken: the local put-if-absent
            except FileExistsError:
                raise AlreadyExists(self.url, key) from None
            finally:
                tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, final)

    def put_bytes(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        tmp: Path | None = None
        try:
            tmp = self._tmpfile()
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self._publish(tmp, key, if_absent)
        except AlreadyExists:
            raise
        except OSError as exc:
            self._drop(tmp)
            raise self._write_error(exc) from exc

    def put_file(self, key: str, path: Path) -> None:
        import shutil

        tmp: Path | None = None
        try:
            tmp = self._tmpfile()
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            self._publish(tmp, key, False)
        except OSError as exc:
            self._drop(tmp)
            raise self._write_error(exc) from exc

    @staticmethod
    def _drop(tmp: Path | None) -> None:
        """Remove a failed write's partial temporary file: on a full disk it holds the space
        that the failure record (and the user's next command) needs."""
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def head(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise ObjectNotFound(self.url, key) from None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Start at the deepest directory the prefix names; filter the rest by prefix. Unsorted,
        # like the interface promises, so a directory is streamed rather than listed whole.
        head = prefix.rpartition("/")[0]
        base = self._path(head) if head else self.root

        def walk(directory: Path, rel: str) -> Iterator[ObjectInfo]:
            try:
                it = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                return
            with it:
                for entry in it:
                    key = f"{rel}{entry.name}"
                    if entry.is_dir(follow_symlinks=False):
                        if key != ".tmp" and (key.startswith(prefix) or prefix.startswith(key + "/")):
                            yield from walk(Path(entry.path), key + "/")
                    elif key.startswith(prefix):
                        st = entry.stat(follow_symlinks=False)
                        yield ObjectInfo(key, st.st_size, st.st_mtime)

        yield from walk(base, f"{head}/" if head else "")

    def delete(self, key: str) -> None:
        failpoints.hit("store-write")
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from exc

    def blob_writer(self, size_hint: int = 0) -> BlobWriter:
        return _LocalBlobWriter(self)


class _LocalBlobWriter(BlobWriter):
    def __init__(self, store: LocalStore) -> None:
        self.store = store
        try:
            self.tmp = store._tmpfile()
            self.fh = open(self.tmp, "wb")
        except OSError as exc:
            raise store._write_error(exc) from exc

    def write(self, chunk: bytes) -> None:
        try:
            self.fh.write(chunk)
        except OSError as exc:
            self.abort()
            raise self.store._write_error(exc) from exc
        self.written += len(chunk)

    def commit(self, sha256: str) -> str:
        key = layout.blob_key(sha256)
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            self.store._publish(self.tmp, key, True)
        except AlreadyExists:
            pass  # the same content is stored already: deduplicated for free
        except OSError as exc:
            self.abort()
            raise self.store._write_error(exc) from exc
        return key

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


