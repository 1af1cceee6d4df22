"""External sort: in memory when it fits, spilled runs merged when it does not."""

from __future__ import annotations

import random

import pytest

from datastore.backends.extsort import sorted_stream


@pytest.mark.parametrize("run_size", [1, 7, 1000, 100_000])
def test_sorts_any_order_with_any_run_size(run_size: int) -> None:
    items = [(f"k/{random.random()}", i) for i in range(5_000)]
    out = list(sorted_stream(iter(items), key=lambda x: x[0], dump=list, load=tuple, run_size=run_size))
    assert out == sorted(items)


def test_spilled_runs_round_trip_unicode_and_are_cleaned_up(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    items = ["é/ü", "a b", "a/b", "a-c", "日本", "+plus", "a"] * 3
    out = list(sorted_stream(items, key=lambda s: s, dump=lambda s: s, load=lambda s: s, run_size=2))
    assert out == sorted(items)
    assert list(tmp_path.iterdir()) == []
