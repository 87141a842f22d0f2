"""The flush conveyor: one flush serves three batches, each at its own stage.

A batch's temporaries are flushed, then it is published (renamed into place) and its renames are
flushed, then its claims are removed and their removal is flushed. One flush covers the newest
batch's temporaries, the previous batch's renames and the claim removals before that, and it runs in
a thread of its own while the next batch is staged, so the disk's wait overlaps our own work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from json_workflow import durable

# A flush that waits for the disk at least this long runs in the flush thread while the next batch is
# staged. A quicker one (tmpfs, a disk cache that absorbs it) is done in place: handing work to another
# thread, and sharing the GIL with it, costs more than such a flush.
OVERLAP_SECONDS = 0.001

B = TypeVar("B")


@dataclass
class Flushed(Generic[B]):
    """What a finished flush made durable, and the error if it failed (then none of it is known durable)."""

    error: OSError | None
    renames: B | None  # the batch whose renames it covered: ready to finish
    removals: list[str] = field(default_factory=list)  # claims whose removal it covered: to forget
    temporaries: B | None = None  # the batch whose temporaries it covered (published unless it failed)


class FlushConveyor(Generic[B]):
    """Runs the barrier's flushes, then publishes the batch whose temporaries they covered."""

    def __init__(self, barrier: durable.Barrier, publish: Callable[[B], None]):
        self.barrier = barrier
        self.publish = publish
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="flush")
        self._flushing: Future[None] | None = None
        self.temporaries: B | None = None  # written; their flush is in flight
        self.renames: B | None = None  # published; the flush in flight covers their renames
        self.removals: list[str] = []  # claims removed; the flush in flight covers their removal
        self.failed = False  # the last flush raised an error
        self._seconds = 0.0  # how long a flush waits for the disk, lately (a running mean)

    @property
    def busy(self) -> bool:
        return self._flushing is not None

    @property
    def overlap(self) -> bool:
        """Whether the next flush pays for a thread of its own (it waits for the disk)."""
        return self._seconds >= OVERLAP_SECONDS

    def start(self, batch: B | None, background: bool) -> None:
        """Flush what the barrier noted, then publish `batch`: in the flush thread, or here and now."""
        flush = self.barrier.take()
        self.temporaries = batch

        def job() -> None:
            started = time.perf_counter()
            flush()
            self._seconds += (time.perf_counter() - started - self._seconds) / 4
            if batch is not None:
                self.publish(batch)

        if background:
            self._flushing = self._thread.submit(job)
            return
        self._flushing = Future()
        try:
            job()
        except OSError as e:
            self._flushing.set_exception(e)
        else:
            self._flushing.set_result(None)

    def wait(self) -> Flushed[B]:
        """Wait for the flush in flight; each batch it covered moves on by one stage."""
        assert self._flushing is not None, "no flush in flight"
        flushing, self._flushing = self._flushing, None
        error = None
        try:
            flushing.result()
        except OSError as e:
            error = e
        self.failed = error is not None
        flushed = Flushed(error, self.renames, temporaries=self.temporaries)
        if error is None:  # until their removal is durable, the journal must still know these claims
            flushed.removals, self.removals = self.removals, []
        self.renames, self.temporaries = self.temporaries, None
        return flushed

    def pending(self) -> bool:
        """Whether another flush is needed to finish what is on the conveyor (renames, or removals to forget)."""
        # Claims to forget wait for a later flush when this one failed: the disk may stay broken.
        return self.renames is not None or (bool(self.removals) and not self.failed)

    def close(self) -> None:
        self._thread.shutdown()
