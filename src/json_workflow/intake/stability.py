"""Deciding when a file is complete, without holding a worker while we wait.

Events and scans report paths; the service asks `ready()` on every tick. A file is ready when an event
said it is complete (closed after writing, or renamed into place) or when its size and modification
time have not changed for `stable_seconds`. In both cases no local process may still hold it open for
writing: a read lease, which the kernel refuses while a writer has the file open, tells us.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from json_workflow.intake import Source

_lease_breaks_ignored = False


def ignore_lease_breaks() -> bool:
    """Make sure a lease break cannot end the process; False when that cannot be done from this thread.

    A writer opening a file while we hold its read lease makes the kernel send SIGIO, whose default
    action terminates the process. Ignored, the break only delays the writer until we let go (microseconds).
    """
    global _lease_breaks_ignored
    if not _lease_breaks_ignored:
        if signal.getsignal(signal.SIGIO) != signal.SIG_IGN:
            if threading.current_thread() is not threading.main_thread():
                return False
            signal.signal(signal.SIGIO, signal.SIG_IGN)
        _lease_breaks_ignored = True  # nothing of ours sets it back
    return True


def writer_has_open(fd: int) -> bool | None:
    """True when a local process has the file of `fd` open for writing; None when the kernel cannot tell us."""
    if not (_lease_breaks_ignored or ignore_lease_breaks()):
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        # EAGAIN: a writer has it open. EPERM/EACCES: not the owner and no CAP_LEASE; EINVAL: NFS & co.
        return True if e.errno == errno.EAGAIN else None
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


# Filesystems whose files other hosts (or a process behind a FUSE mount) may write: a lease sees only
# this kernel's writers there. statfs(2) f_type values: NFS, SMB, CIFS, SMB2, FUSE, Ceph, AFS, 9P, Coda,
# GFS2, OCFS2, Lustre.
_SHARED_FILESYSTEMS = {
    0x6969,
    0x517B,
    0xFF534D42,
    0xFE534D42,
    0x65735546,
    0x00C36400,
    0x5346414F,
    0x01021997,
    0x73757245,
    0x01161970,
    0x7461636F,
    0x0BD00BD0,
}
_libc = ctypes.CDLL(None, use_errno=True)
_local: dict[int, bool] = {}  # device -> is it a filesystem only this kernel writes


def writers_visible(path: str, device: int) -> bool:
    """True when every writer of the file at `path` (on `device`) is a process of this machine's kernel."""
    local = _local.get(device)
    if local is None:
        buffer = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first field
        if _libc.statfs(os.fsencode(path), buffer) != 0:
            return False
        local = _local[device] = ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF not in _SHARED_FILESYSTEMS
    return local


def open_for_writing(path: str) -> bool | None:
    """True when a local process has `path` open for writing; None when the kernel cannot tell us."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return writer_has_open(fd)
    finally:
        os.close(fd)


class Waker:
    """Wakes the main loop from any thread or a signal handler: a byte in a pipe, no lock taken.

    threading.Event takes a lock; a signal handler that sets it while the main thread holds that
    lock (inside wait or clear) deadlocks the loop.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._set = False

    def fileno(self) -> int:
        """The end to write to, for signal.set_wakeup_fd."""
        return self._write

    def set(self) -> None:
        if self._set:  # a byte is in the pipe until the next clear: one wake-up for a burst of events
            return
        self._set = True
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full: a wake-up is pending anyway
            pass

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> None:
        """Return when set (now or earlier, since the last clear) or after `timeout` seconds."""
        select.select([self._read], [], [], max(0.0, timeout))

    def clear(self) -> None:
        # Emptied before the flag drops: a set() that skips its write while the flag is up is always followed by
        # this clear, and the loop looks for work after it (the reverse order could lose that wake-up).
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        self._set = False

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


@dataclass
class _Tracked:
    source: Source
    size: int
    mtime_ns: int
    since: float  # when (size, mtime) last changed
    complete: bool  # an event said the writer finished


class StabilityTracker:
    """The files reported but not yet taken, shared by the watcher thread, the scans and the service."""

    def __init__(self, stable_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.stable_seconds = stable_seconds
        self.clock = clock
        self._files: dict[str, _Tracked] = {}
        self._held: dict[str, tuple[float, Source]] = {}  # path -> (retry time, source)
        # The watcher's reports, taken into _files (in order, under the lock) by whoever looks next: a burst of
        # events never makes the main loop queue for the lock behind the watcher's thread.
        self._reported: deque[tuple[str, Source, bool]] = deque()
        self._lock = threading.Lock()
        self.wake = Waker()  # set when something may be ready now

    def __len__(self) -> int:
        with self._lock:  # a file's reports (created, written, closed) count once, as a tracked file
            self._take_reported()
            return len(self._files)

    def __contains__(self, path: str) -> bool:
        with self._lock:
            self._take_reported()
            return path in self._files

    def report(self, path: str, source: Source, complete: bool = False) -> None:
        """`seen`, from the watcher's thread: no lock taken, no answer."""
        self._reported.append((path, source, complete))
        if complete or self.stable_seconds == 0:
            self.wake.set()

    def seen(self, path: str, source: Source, complete: bool = False) -> bool:
        """Report `path`; `complete` when an event says its writer is done. False if already tracked."""
        with self._lock:
            self._take_reported()
            new = self._seen(path, source, complete)
        if complete or self.stable_seconds == 0:
            self.wake.set()
        return new

    def _seen(self, path: str, source: Source, complete: bool) -> bool:
        if path in self._held:
            return False
        tracked = self._files.get(path)
        if tracked is None:
            self._files[path] = _Tracked(source, -1, -1, self.clock(), complete)
        else:
            tracked.complete |= complete
        return tracked is None

    def _take_reported(self) -> None:
        """The watcher's reports so far into _files (the lock held)."""
        while self._reported:
            self._seen(*self._reported.popleft())

    def hold(self, path: str, source: Source, seconds: float) -> None:
        """Ignore `path` for `seconds` (its destination is in trouble), then take it again."""
        with self._lock:
            self._take_reported()
            self._files.pop(path, None)
            self._held[path] = (self.clock() + seconds, source)

    @property
    def holding(self) -> int:
        """How many files are held (waiting for their destination)."""
        return len(self._held)

    def is_held(self, path: str) -> bool:
        return path in self._held

    def release(self, paths: list[str]) -> None:
        """Take these held files again at once (their destination works again)."""
        with self._lock:
            for path in paths:
                if path in self._held:
                    self._held[path] = (0.0, self._held[path][1])
        self.wake.set()

    def release_due(self) -> int:
        """Track again the held files whose retry time has come; returns how many."""
        now = self.clock()
        with self._lock:
            self._take_reported()
            due = [(p, source) for p, (until, source) in self._held.items() if until <= now]
            for path, source in due:
                del self._held[path]
                self._files[path] = _Tracked(source, -1, -1, now, True)
        return len(due)

    def ready(self) -> list[tuple[str, Source, bool]]:
        """Take every tracked file that is complete now, as (path, source, is it a symlink), oldest report first."""
        now = self.clock()
        with self._lock:
            self._take_reported()
            items = list(self._files.items())
        taken, gone = [], []
        for path, t in items:
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                gone.append(path)
                continue
            if (info.st_size, info.st_mtime_ns) != (t.size, t.mtime_ns):
                # Unchanged since its last write: a file dropped long ago needs no waiting.
                age = max(0.0, time.time() - info.st_mtime_ns / 1e9)
                t.size, t.mtime_ns, t.since = info.st_size, info.st_mtime_ns, now - age
            if not t.complete and now - t.since < self.stable_seconds:
                continue
            if open_for_writing(path):
                t.complete = False  # a writer reopened it or never closed it: wait for stability again
                t.since = now
                continue
            taken.append((path, t.source, stat.S_ISLNK(info.st_mode)))  # the lstat we have: no second one
        with self._lock:
            for path in gone:
                self._files.pop(path, None)
            for path, _, _ in taken:
                self._files.pop(path, None)
        return taken

    def next_due(self) -> float:
        """Seconds until the next file could become ready (capped at one second)."""
        with self._lock:
            self._take_reported()
            times = [t.since + self.stable_seconds for t in self._files.values()]
            times += [until for until, _ in self._held.values()]
        if not times:
            return 1.0
        return max(0.05, min(1.0, min(times) - self.clock()))
