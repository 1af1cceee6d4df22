"""Progress of a running creation, shared between transfer tasks and whoever displays it.

Creation code reports to a :class:`Reporter` it is given (the flow passes its monitor's
:class:`Progress`; :data:`NO_PROGRESS` when nobody watches). The CLI installs a :class:`Progress`
with :func:`install` and renders it; the module-level :func:`add_total` / :func:`advance` report
to that installed sink (the HTTP download, which has no reporter to be given, uses them).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


class Reporter(Protocol):
    """Where creation code reports work found and work done (:class:`Progress` is one)."""

    def add_total(self, files: int, nbytes: int) -> None:
        """Grow the known totals."""

    def advance(self, files: int, nbytes: int, uploaded: int = 0) -> None:
        """Count finished work."""


class _NoProgress:
    """A :class:`Reporter` that drops everything (nobody is watching)."""

    def add_total(self, files: int, nbytes: int) -> None:
        """Nothing to grow."""

    def advance(self, files: int, nbytes: int, uploaded: int = 0) -> None:
        """Nothing to count."""

    def __repr__(self) -> str:
        return "NO_PROGRESS"


NO_PROGRESS: Reporter = _NoProgress()


class Interrupted(KeyboardInterrupt):
    """Raised by :meth:`Progress.advance` in a transfer thread once the user interrupted the creation.

    Ctrl-C reaches only the main thread; the transfer threads would finish their batches before
    the flow could end. Reporting progress is what every transfer does often (once a file), so
    that is where they learn of it and stop. Committed nothing is ever affected: the commit runs
    in the main thread, after the transfers.
    """


#: The phase before the flow runs: Prefect is imported, the flow run is created (and, out of the
#: box, the local Prefect server started on first use).
STARTING = "starting Prefect"


@dataclass
class Progress:
    """Thread-safe counters of one creation, and when each of its phases began.

    Attributes:
        started: When the work began (``time.time()``; the CLI passes its own start, so that the
            time before the flow runs counts as the phase :data:`STARTING`).
        timeline: ``(phase, began)`` in order, one entry per change of phase.
    """

    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    bytes_uploaded: int = 0
    phase: str = STARTING
    started: float = field(default_factory=time.time)
    timeline: list[tuple[str, float]] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.timeline:
            self.timeline.append((self.phase, self.started))

    def add_total(self, files: int, nbytes: int) -> None:
        """Grow the known totals (the scan streams, so totals arrive in steps)."""
        with self._lock:
            self.files_total += files
            self.bytes_total += nbytes

    def advance(self, files: int, nbytes: int, uploaded: int = 0) -> None:
        """Count finished work.

        Raises:
            Interrupted: :attr:`cancelled` is set (the user pressed Ctrl-C); nothing is counted
                (the batch this work belongs to will not be finished).
        """
        if self.cancelled.is_set():
            raise Interrupted
        with self._lock:
            self.files_done += files
            self.bytes_done += nbytes
            self.bytes_uploaded += uploaded

    def set_phase(self, phase: str, reset: bool = False) -> None:
        """Name the step now running; ``reset`` starts the counters afresh (a new unit of work)."""
        with self._lock:
            if phase != self.phase:
                self.timeline.append((phase, time.time()))
            self.phase = phase
            if reset:
                self.files_total = self.bytes_total = self.files_done = self.bytes_done = 0


    def durations(self, end: float | None = None) -> list[tuple[str, float]]:
        """Seconds spent in each phase up to ``end`` (default now), in the order they first ran; "done" left out."""
        with self._lock:
            marks = [*self.timeline, ("", end if end is not None else time.time())]
        spent: dict[str, float] = {}
        for (phase, began), (_, ended) in zip(marks, marks[1:]):
            if phase != "done":
                spent[phase] = spent.get(phase, 0.0) + max(ended - began, 0.0)
        return list(spent.items())


_current: Progress | None = None


def install(p: Progress | None) -> None:
    """Make ``p`` the sink of this process (None removes it)."""
    global _current
    _current = p


@contextlib.contextmanager
def installed(p: Progress) -> Iterator[Progress]:
    """Make ``p`` the sink for the duration of a ``with`` block."""
    install(p)
    try:
        yield p
    finally:
        install(None)


def current() -> Progress | None:
    """The installed sink, if any."""
    return _current
