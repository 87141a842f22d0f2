"""The flush barrier and conveyor: one flush serves three batches, each at its own stage.

Flushing each copy on its own costs a disk round trip per copy (about 1 ms here). A batch writes all
its temporaries, flushes once, renames them all into place, and flushes the folder entries once: the
Barrier collects what a batch changed and makes it durable in one go.

A batch's temporaries are flushed, then it is published (renamed into place) and its renames are
flushed, then its claims are removed and their removal is flushed. One flush covers the newest
batch's temporaries, the previous batch's renames and the claim removals before that, and it runs in
a thread of its own while the next batch is staged, so the disk's wait overlaps our own work.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from json_workflow import durable

_syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)

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

    def __init__(self, barrier: Barrier, publish: Callable[[B], None]):
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


class Barrier:
    """Collects files and folders written by a batch, then makes them all durable in one flush.

    With mode "filesystem" one syncfs(2) per filesystem touched; with mode "file" an fsync per file
    and per folder, for filesystems where syncfs is not trusted or a busy disk is shared.
    """

    def __init__(self, mode: str = "filesystem"):
        self.per_file = mode == "file" or _syncfs is None
        self._devices: dict[int, str] = {}
        self._device_of: dict[str, int] = {}
        self._files: list[str] = []
        self._folders: set[str] = set()

    def add(self, folder: str | Path, file: str | None = None) -> None:
        """Note that `file` (or an entry of `folder`) changed and must reach the disk."""
        folder = str(folder)
        if self.per_file:
            if file is not None:
                self._files.append(file)
            self._folders.add(folder)
            return
        device = self._device_of.get(folder)
        if device is None:
            device = self._device_of[folder] = os.stat(folder).st_dev
        self._devices.setdefault(device, folder)

    def flush(self) -> None:
        """Make everything noted since the last flush durable; raises OSError when the disk says no."""
        self.take()()

    def take(self) -> Callable[[], None]:
        """Everything noted so far, as a flush that may run in another thread; the barrier starts afresh.

        Taken in the thread that notes, so a change noted later is never counted as flushed by it.
        """
        if self.per_file:
            files, folders = self._files, self._folders
            self._files, self._folders = [], set()
            return functools.partial(_fsync_all, files, folders)
        devices, self._devices = self._devices, {}
        return functools.partial(_syncfs_all, list(devices.values()))


def _fsync_all(files: list[str], folders: set[str]) -> None:
    for file in files:
        with contextlib.suppress(FileNotFoundError):  # a temporary discarded since: nothing to flush
            durable.fsync_path(file)
    for folder in folders:
        fd = _open_folder(folder)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _syncfs_all(folders: list[str]) -> None:
    """One syncfs(2) per filesystem, through a folder on it."""
    for folder in folders:
        fd = _open_folder(folder)
        try:
            if _syncfs(fd) != 0:  # type: ignore[misc]  # not None: checked where per_file is set
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), folder)
        finally:
            os.close(fd)


def _open_folder(folder: str) -> int:
    """`folder`, or once it is removed (a released claim's own folder) its nearest parent, which records that."""
    while True:
        try:
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            parent = os.path.dirname(folder)
            if parent == folder:
                raise
            folder = parent
