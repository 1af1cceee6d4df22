"""Building one batch: pack small files into shared objects, keep plan order, write the result.

Small files are appended to an in-memory pack (at most ``pack_bytes``); when it is full it is
stored under its content address (idempotent on retry) and the entries it holds learn their object key.
Large files arrive as objects of their own. A file larger than
:data:`~datastore.model.manifest.BLOCK_BYTES` gets its block hashes in both cases (a packed one
here, from its bytes in memory; a streamed one from the pipeline's stream-and-hash loop). The
finished batch manifest lists every item of the plan, in plan order, and is what
:func:`datastore.creation.pipeline.commit` concatenates.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import replace

from datastore import failpoints
from datastore.model.hashing import hash_bytes
from datastore.model.manifest import BLOCK_BYTES, Entry, Item, ManifestWriter, Skipped
from datastore.model.progress import NO_PROGRESS, Reporter
from datastore.settings import Settings
from datastore.store import Store


def pack_address(members: Iterable[tuple[int, str]]) -> str:
    """Content address of a pack, from its members' (size, sha256) in order.

    A pack's bytes are exactly its members' bytes concatenated, so this list determines them;
    hashing it avoids hashing every byte a second time (each file was hashed when read).
    """
    h = hashlib.sha256(b"datastore-pack/1\n")
    for size, sha256 in members:
        h.update(f"{size} {sha256}\n".encode())
    return h.hexdigest()


class BatchBuilder:
    """Accumulates the items of one batch.

    Memory is bounded by one pack plus one small entry per item of the batch.
    """

    def __init__(self, store: Store, settings: Settings, progress: Reporter = NO_PROGRESS) -> None:
        self.store = store
        self.settings = settings
        self.progress = progress
        self.items: list[Item] = []  # manifest items in plan order; pack members get their object on flush
        self._pack = bytearray()
        self._members: list[int] = []  # indexes into items of the current pack's members
        self.uploaded = 0

    def reuse(self, entry: Entry) -> None:
        """Keep an unchanged file: its bytes are already stored."""
        self.items.append(entry)
        self.progress.advance(1, entry.size)

    def skip(self, path: str, reason: str) -> None:
        """Record an item that is deliberately not stored."""
        self.items.append(Skipped(path, reason))

    def small(self, path: str, data: bytes, mtime_ns: int | None = None, source: dict | None = None) -> None:
        """Add a small file's bytes to the current pack (with block hashes if it is larger than a block)."""
        got = hash_bytes(data, BLOCK_BYTES)
        entry = Entry(path, got.size, got.sha256, None, len(self._pack), mtime_ns, source, blocks=got.blocks)
        self._pack += data
        self._members.append(len(self.items))
        self.items.append(entry)
        self.progress.advance(1, len(data))
        if len(self._pack) >= self.settings.pack_bytes:
            self.flush()

    def blob(self, path: str, size: int, sha256: str | None, key: str, written: int, mtime_ns: int | None = None,
             source: dict | None = None, etag: str | None = None, blocks: tuple[str, ...] | None = None) -> None:
        """Add a large file already stored as its own object.

        ``etag`` (and no ``sha256``, no ``blocks``) for a server-side copy; ``blocks`` for one
        streamed through here.
        """
        self.items.append(Entry(path, size, sha256, key, 0, mtime_ns, source, etag, blocks))
        self.uploaded += written
        self.progress.advance(1, size, written)

    def flush(self) -> None:
        """Store the current pack (if any) and point its members at it."""
        if not self._members:
            return
        data = self._pack  # stored as is: a bytes() copy would double the pack's memory
        members = [self.items[i] for i in self._members]
        key, wrote = self.store.put_pack(data, pack_address((m.size, m.sha256) for m in members))  # type: ignore[union-attr]
        if wrote:
            self.uploaded += len(data)
            self.progress.advance(0, 0, len(data))
        for i, m in zip(self._members, members):
            self.items[i] = replace(m, object=key)
        self._pack = bytearray()
        self._members = []

    def finish(self, batch_key: str) -> int:
        """Flush, write the batch manifest to ``batch_key``; return the data bytes uploaded."""
        self.flush()
        buf = io.BytesIO()
        with ManifestWriter(buf) as w:
            for item in self.items:
                w.add(item)
        self.store.put_bytes(batch_key, buf.getvalue())
        failpoints.hit("after-batch")
        return self.uploaded
