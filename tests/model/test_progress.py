"""A creation's progress: counters and the time each phase took."""

from __future__ import annotations

import pytest

from datastore.model import progress
from datastore.model.progress import STARTING, Progress


def test_phases_are_timed_in_the_order_they_first_ran_and_done_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Progress(started=100.0)
    assert p.phase == STARTING and p.timeline == [(STARTING, 100.0)]
    for phase, at in (("scanning", 103.0), ("scanning", 103.5), ("transferring", 104.0), ("committing", 110.0),
                      ("done", 110.5)):
        monkeypatch.setattr(progress.time, "time", lambda at=at: at)
        p.set_phase(phase)
    # A repeated phase adds no entry: the time runs on in the phase already running.
    assert p.timeline == [(STARTING, 100.0), ("scanning", 103.0), ("transferring", 104.0), ("committing", 110.0),
                          ("done", 110.5)]
    assert p.durations(end=111.0) == [(STARTING, 3.0), ("scanning", 1.0), ("transferring", 6.0), ("committing", 0.5)]


def test_a_phase_run_twice_adds_up() -> None:
    p = Progress(started=0.0, timeline=[(STARTING, 0.0), ("downloading", 1.0), ("extracting", 2.0),
                                        ("downloading", 4.0), ("committing", 7.0)])
    assert p.durations(end=8.0) == [(STARTING, 1.0), ("downloading", 4.0), ("extracting", 2.0), ("committing", 1.0)]


def test_reset_starts_the_counters_afresh_but_keeps_the_timeline() -> None:
    p = Progress()
    p.add_total(10, 1000)
    p.advance(4, 400, 400)
    p.set_phase("extracting", reset=True)
    assert (p.files_total, p.files_done, p.bytes_total, p.bytes_done, p.bytes_uploaded) == (0, 0, 0, 0, 400)
    assert [name for name, _ in p.timeline] == [STARTING, "extracting"]


def test_once_cancelled_advance_raises_in_the_transfer_thread_and_counts_nothing() -> None:
    import threading

    from datastore.model.progress import Interrupted

    p = Progress()
    p.add_total(3, 30)
    p.advance(1, 10)
    p.cancelled.set()  # what the CLI's Ctrl-C handler does
    raised: list[BaseException] = []

    def transfer() -> None:
        try:
            p.advance(1, 10)
        except BaseException as exc:  # noqa: BLE001
            raised.append(exc)

    t = threading.Thread(target=transfer)
    t.start()
    t.join()
    assert [type(e) for e in raised] == [Interrupted] and isinstance(raised[0], KeyboardInterrupt)
    assert (p.files_done, p.bytes_done) == (1, 10)
