"""The rule for manifest paths that become paths in a tree (download, the mount's index)."""

from __future__ import annotations

import itertools

import pytest

from datastore.model.paths import is_safe, safe_parts


@pytest.mark.parametrize("path", ["a", "a/b.txt", "...", ".a", "a/.b/..c", "with space/ü", "a/b/c/d", "-"])
def test_safe(path: str) -> None:
    assert is_safe(path)
    assert safe_parts(path) == path.split("/")


@pytest.mark.parametrize("path", ["", "/", "/a", "a/", "a//b", ".", "..", "./a", "a/.", "a/../b", "../a", "a/..",
                                  "a\x00b", "//"])
def test_unsafe(path: str) -> None:
    assert not is_safe(path)
    assert safe_parts(path) is None


def test_same_as_looking_at_each_component() -> None:
    """The substring test agrees with the plain rule on every short path over a tricky alphabet."""
    for n in range(1, 7):
        for chars in itertools.product("a./\x00", repeat=n):
            path = "".join(chars)
            parts = path.split("/")
            plain = not path.startswith("/") and "\x00" not in path and not any(p in ("", ".", "..") for p in parts)
            assert is_safe(path) == plain, path
