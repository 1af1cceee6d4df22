from __future__ import annotations

import pickle

import pytest

from datastore.errors import (
    BlocksNotRecorded,
    ChecksumMismatch,
    DatastoreError,
    QuotaExceeded,
    SourceNotFound,
    StoreAccessDenied,
    StoreUnavailable,
    is_transient,
)


def test_errors_render_one_line_with_problem_and_fix() -> None:
    exc = QuotaExceeded(50, 50)
    text = str(exc)
    assert "\n" not in text
    assert "50 live versions" in text and "datastore delete" in text
    assert exc.live == 50 and exc.limit == 50


def test_errors_inherit_fitting_builtins() -> None:
    assert isinstance(SourceNotFound("/x"), FileNotFoundError)
    assert isinstance(StoreAccessDenied("s3://b/", "403"), PermissionError)
    assert str(SourceNotFound("/x")).startswith("source '/x' does not exist")


@pytest.mark.parametrize("exc", [QuotaExceeded(3, 2), SourceNotFound("/p"), StoreUnavailable("s3://b/", "timeout"),
                                 ChecksumMismatch("a/b.bin", "e" * 64, "a" * 64, block=3),
                                 BlocksNotRecorded("c.bin", "a server-side copy")])
def test_errors_survive_pickling_with_arguments(exc: DatastoreError) -> None:
    # Prefect may serialize a task's exception into its state; it must come back intact.
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.__dict__ == exc.__dict__


def test_transient_classification() -> None:
    assert is_transient(StoreUnavailable("s3://b/", "timeout"))
    assert not is_transient(QuotaExceeded(1, 1))
    assert not is_transient(ValueError("bad"))
    assert is_transient(OSError("disk hiccup"))


def test_a_block_mismatch_names_the_block_and_the_file() -> None:
    exc = ChecksumMismatch("a/b.bin", "e" * 64, "a" * 64, block=3)
    assert str(exc).startswith("block 3 of file 'a/b.bin' does not match its manifest (sha256 aaaaaaaaaaaa… != eeee")
    assert (exc.path, exc.block) == ("a/b.bin", 3)
    assert ChecksumMismatch("a/b.bin", "e", "a").block is None
