"""The read-only FUSE filesystem of one version (``datastore mount``), on mfusepy.

Every operation is answered from two local things: the on-disk manifest index
(:class:`~datastore.reading.index.ManifestIndex`: ``getattr``/``readdir`` never touch the store,
and nothing is ever listed) and the verified, cached reads of
:class:`~datastore.reading.blocks.CachedReader` (``read``). A version is immutable, so the
kernel may keep everything it learns: attributes, directory entries and negative lookups are
cached for a day and file pages stay in the page cache across opens (``kernel_cache``).

Errors: a file whose bytes do not match the manifest, a ``--no-copy`` object that changed or
is gone, a store object that is gone, and a store that does not answer within
``DATASTORE_READ_TIMEOUT`` are ``EIO`` for that read, with one log line naming the file. Every
write is ``EROFS`` (the mount is ``ro``; the handlers say so too, for callers that get past it).

Binding: mfusepy (ctypes over libfuse 3, high-level path API, one thread per request). It is
a pure-Python wheel with no compile step; see the README for the measurement against pyfuse3.
"""

from __future__ import annotations

import ctypes.util
import errno
import logging
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from datastore.errors import DatastoreError, FuseUnavailable
from datastore.reading.blocks import CachedReader, OpenFile
from datastore.reading.index import ManifestIndex, Node

log = logging.getLogger("datastore.mount")

OPEN_FILES = 4096
"""Files whose read state (read-ahead streams) is kept."""

KERNEL_TTL = 24 * 3600.0
"""Seconds the kernel may cache attributes and names (a version never changes)."""


def load_binding(name: str = "NAME"):  # noqa: ANN201 - the mfusepy module
    """Import mfusepy bound to libfuse 3.

    mfusepy prefers libfuse 2 when both are installed (s3fs-fuse pulls in libfuse 2), but only
    libfuse 3's ``fusermount3`` is on a machine with the ``fuse3`` package; so point it at
    libfuse 3 first.

    Raises:
        FuseUnavailable: no libfuse 3 on this machine.
    """
    if "FUSE_LIBRARY_PATH" not in os.environ:
        lib = ctypes.util.find_library("fuse3")
        if lib is None:
            raise FuseUnavailable("libfuse 3 is not installed (Debian/Ubuntu: apt-get install fuse3)", name)
        os.environ["FUSE_LIBRARY_PATH"] = lib
    try:
        import mfusepy
    except (ImportError, OSError, EnvironmentError) as exc:
        raise FuseUnavailable(f"libfuse could not be loaded ({exc})", name) from None
    return mfusepy


def check_available(name: str = "NAME") -> None:
    """Raise :class:`FuseUnavailable` when this machine cannot mount (checked before any work).

    Args:
        name: The datastore, for the suggested ``datastore download`` command.

    Raises:
        FuseUnavailable: no ``/dev/fuse``, no ``fusermount3`` or no libfuse 3.
    """
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable("this machine has no /dev/fuse (in a container: run it with --device /dev/fuse)", name)
    if not any(os.access(os.path.join(d, "fusermount3"), os.X_OK) for d in os.environ.get("PATH", "").split(":") if d):
        raise FuseUnavailable("fusermount3 is not installed (Debian/Ubuntu: apt-get install fuse3)", name)
    load_binding(name)


class VersionFS:
    """mfusepy operations of one mounted version (read-only).

    Args:
        index: The version's manifest index.
        reads: Checked, cached reads of its files.
        on_ready: Called once the kernel has connected (the mount answers from then on).
    """

    use_ns = True  # st_mtime in nanoseconds, as the manifest records it

    def __init__(self, index: ManifestIndex, reads: CachedReader, on_ready: Callable[[], None] | None = None) -> None:
        self.index = index
        self.reads = reads
        self.on_ready = on_ready
        self._files: OrderedDict[str, OpenFile] = OrderedDict()
        self._lock = threading.Lock()
        self._uid, self._gid = os.getuid(), os.getgid()
        self.reads_served = 0
        self.errors = 0

    # --- mount life -----------------------------------------------------------------------------

    def init_with_config(self, conn, config) -> None:  # noqa: ANN001 - libfuse structs
        """Tell the kernel it may cache everything, then report the mount ready."""
        if config is not None:
            config.entry_timeout = KERNEL_TTL
            config.attr_timeout = KERNEL_TTL
            config.negative_timeout = KERNEL_TTL
            config.kernel_cache = 1
        if conn is not None:
            conn.max_readahead = max(conn.max_readahead, 1024 * 1024)
        if self.on_ready is not None:
            self.on_ready()

    def destroy(self, path: str) -> None:
        """Stop the fetch threads when the filesystem is unmounted."""
        self.reads.close()

    # --- metadata -------------------------------------------------------------------------------

    def _node(self, path: str) -> Node:
        node = self.index.lookup(path.strip("/"))
        if node is None:
            raise self._fuse_error(errno.ENOENT)
        return node

    def getattr(self, path: str, fh: object = None) -> dict:
        """``stat`` from the index: folders 0555, files 0444, owned by the mounting user."""
        node = self._node(path)
        mtime = node.mtime_ns or 0
        common = {"st_uid": self._uid, "st_gid": self._gid, "st_mtime": mtime, "st_ctime": mtime, "st_atime": mtime}
        if node.is_dir:
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_size": 0, **common}
        return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": node.size,
                "st_blocks": (node.size + 511) // 512, "st_blksize": 1024 * 1024, **common}

    def readdir(self, path: str, fh: int) -> Iterator:
        """The names in a folder, from the index (with their type, so ``ls`` needs no stat)."""
        node = self._node(path)
        if not node.is_dir:
            raise self._fuse_error(errno.ENOTDIR)
        yield "."
        yield ".."
        for name, child in self.index.children(node.path):
            yield name, (stat.S_IFDIR if child.is_dir else stat.S_IFREG), 0

    def access(self, path: str, amode: int) -> int:
        """Everything may be read; nothing may be written."""
        self._node(path)
        if amode & os.W_OK:
            raise self._fuse_error(errno.EROFS)
        return 0

    def statfs(self, path: str) -> dict:
        """Sizes of the version (nothing free: it is read-only)."""
        bsize = 4096
        return {"f_bsize": bsize, "f_frsize": bsize, "f_blocks": (self.index.bytes + bsize - 1) // bsize,
                "f_bfree": 0, "f_bavail": 0, "f_files": self.index.files + self.index.dirs, "f_ffree": 0,
                "f_favail": 0, "f_namemax": 255}

    # --- data -----------------------------------------------------------------------------------

    # No open/release handlers: libfuse answers them in C (the mount is read-only, so the
    # kernel refuses opens for writing itself, and ``kernel_cache`` sets keep_cache), which
    # saves two calls into Python per file read. Read state is kept per file instead.

    def _opened(self, path: str) -> OpenFile:
        """The read state of a file, by path (a bounded LRU: it holds only read-ahead state)."""
        rel = path.strip("/")
        with self._lock:
            f = self._files.get(rel)
            if f is not None:
                self._files.move_to_end(rel)
                return f
        node = self._node(path)
        if node.is_dir:
            raise self._fuse_error(errno.EISDIR)
        entry = self.index.entry(node.path)
        if entry is None:
            raise self._fuse_error(errno.ENOENT)
        f = OpenFile(entry, node.seq)
        with self._lock:
            f = self._files.setdefault(rel, f)
            while len(self._files) > OPEN_FILES:
                self._files.popitem(last=False)
        return f

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """Checked bytes of a file; ``EIO`` (one log line naming it) when they cannot be had."""
        f = self._opened(path)
        try:
            data = self.reads.read(f, offset, size)
        except DatastoreError as exc:
            self.errors += 1
            log.error("EIO %s: %s", f.entry.path, exc.line())
            raise self._fuse_error(errno.EIO) from None
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is still that file's EIO, not a crash
            self.errors += 1
            log.exception("EIO %s: %s", f.entry.path, exc)
            raise self._fuse_error(errno.EIO) from None
        self.reads_served += 1
        return data

    # --- writes: refused ------------------------------------------------------------------------

    def _refuse(self, *args: object) -> int:
        raise self._fuse_error(errno.EROFS)

    create = mkdir = rmdir = unlink = rename = symlink = link = chmod = chown = truncate = write = _refuse
    utimens = mknod = setxattr = removexattr = _refuse

    @staticmethod
    def _fuse_error(code: int) -> OSError:
        return OSError(code, os.strerror(code))
