from __future__ import annotations

import hashlib
import io

from datastore.creation.packer import BatchBuilder, pack_address
from datastore.model.manifest import Entry, read_items
from datastore.settings import Settings
from datastore.store import open_store


def _members(*blobs: bytes) -> list[tuple[int, str]]:
    return [(len(b), hashlib.sha256(b).hexdigest()) for b in blobs]


def test_pack_address_is_fixed_by_member_contents_and_order() -> None:
    assert pack_address(_members(b"a", b"bc")) == pack_address(_members(b"a", b"bc"))
    assert pack_address(_members(b"a", b"bc")) != pack_address(_members(b"bc", b"a"))
    assert pack_address(_members(b"ab", b"c")) != pack_address(_members(b"a", b"bc"))


def test_builder_packs_small_files_and_keeps_plan_order(local_store: str) -> None:
    store = open_store()
    builder = BatchBuilder(store, Settings(pack_bytes=5))
    builder.small("a", b"123")
    builder.skip("b", "fifo")
    builder.small("c", b"4567")  # fills the first pack (7 >= 5 bytes): flushed
    builder.small("d", b"89")
    uploaded = builder.finish("staging/batch")
    items = list(read_items(io.BytesIO(store.get_bytes("staging/batch"))))
    assert [i.path for i in items] == ["a", "b", "c", "d"]
    a, c, d = (i for i in items if isinstance(i, Entry))
    assert a.object == c.object != d.object and (a.offset, c.offset, d.offset) == (0, 3, 0)
    assert store.get_range(c.object, c.offset, c.size) == b"4567"
    assert uploaded == 9

    again = BatchBuilder(store, Settings(pack_bytes=5))
    for path, data in (("a", b"123"), ("c", b"4567"), ("d", b"89")):
        again.small(path, data)
    assert again.finish("staging/batch2") == 0  # same packs, same keys: nothing written twice
