"""Real-time intake: inotify events (or watchdog's polling observer, for network shares) -> the tracker.

With inotify, one watch per folder: the hot folder and each client folder, never the claim area. We
use watchdog's inotify layer (`InotifyFD`, its shared reader thread with per-watch callbacks) rather
than its Observer, because the Observer holds every "moved from" half of a rename for 0.5 s to pair
it and searches that queue linearly for each "moved to": a burst of 10,000 drops spent half the
service's time there, and each claim (a rename out of a client folder) stalled the events behind it.

What each event means: closed after writing, or renamed in -> complete; only created -> complete
once a close follows or it has been stable for `stable_seconds`; a new client folder -> watched
and scanned at once (files written right after mkdir beat the new watch, watchdog#990); a queue
overflow -> a full rescan.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from watchdog.events import FileCreatedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify_c import CallbackId, InotifyEvent, InotifyFD, Mask, WatchDescriptor
from watchdog.observers.inotify_c import InotifyConstants as IN
from watchdog.observers.polling import PollingObserver

from json_workflow.intake import Source
from json_workflow.intake.scan import is_job_name
from json_workflow.intake.stability import StabilityTracker
from json_workflow.logs import log

_MASK = IN.IN_CLOSE_WRITE | IN.IN_MOVED_TO | IN.IN_CREATE | IN.IN_DELETE_SELF | IN.IN_ONLYDIR | IN.IN_DONT_FOLLOW

_Event = TypeVar("_Event")


def _safely(handle: Callable[[_Event], None], event: _Event) -> None:
    try:
        handle(event)
    except Exception:
        # Raised into watchdog, it would end the thread reading events, and real-time intake with it.
        log.exception("Error handling a file event; the periodic scan will catch up")


class Watcher:
    """Reports job files of the hot folder and its client folders to the tracker."""

    mode = "inotify"

    def __init__(
        self, hot: Path, tracker: StabilityTracker, on_folder: Callable[[str], None], on_overflow: Callable[[], None]
    ):
        self.hot = str(hot)
        self.tracker = tracker
        self.on_folder = on_folder
        self.on_overflow = on_overflow
        self.reported: set[str] = set()  # paths events told us about, for the scans' "missed" count
        self._lock = threading.Lock()

    def _report(self, path: str, complete: bool) -> None:
        with self._lock:
            self.reported.add(path)
        self.tracker.report(path, Source.REALTIME, complete)

    def take_reported(self) -> set[str]:
        """The paths reported since the last call (to count what scans found that events missed)."""
        with self._lock:
            reported, self.reported = self.reported, set()
        return reported

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        """False once events can no longer arrive (the hot folder's watch ended: unmounted, removed)."""
        raise NotImplementedError


class _Folder:
    """watchdog's WatchCallback for one watched folder."""

    def __init__(self, watcher: InotifyWatcher, path: str, top: bool):
        self.watcher, self.path, self.top = watcher, path, top

    def on_event(self, event: InotifyEvent) -> None:
        _safely(self._on_event, event)

    def _on_event(self, event: InotifyEvent) -> None:
        name = os.fsdecode(event.name)
        if not name or name.startswith("."):
            return
        path = os.path.join(self.path, name)
        if event.is_directory:
            if self.top and (event.is_create or event.is_moved_to):
                self.watcher.add_client(path)
                self.watcher.on_folder(path)
        elif is_job_name(name):
            # Renamed in (IN_MOVED_TO, which watchdog's Observer would have called "created") or closed
            # after writing: complete. Only created: wait for a close, or for stability.
            self.watcher._report(path, complete=event.is_close_write or event.is_moved_to)

    def on_watch_deleted(self, wd) -> None:
        self.watcher.forget(wd)

    def on_queue_overflow(self) -> None:
        self.watcher.on_overflow()

    def on_events_lost(self) -> None:
        # watchdog 7.1.1 calls this after the overflow, once every watch is repaired: a rescan then sees them all.
        self.watcher.on_overflow()


class InotifyWatcher(Watcher):
    mode = "inotify"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fd = InotifyFD.get_instance()
        self._watches: dict[WatchDescriptor, str] = {}
        self._top: int | None = None

    def start(self) -> None:
        self._top = self._add(self.hot, top=True)
        with os.scandir(self.hot) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                    self.add_client(entry.path)

    def add_client(self, path: str) -> None:
        try:
            self._add(path, top=False)
        except OSError:
            pass  # gone again, or a file: the periodic scan has the last word

    def _add(self, path: str, top: bool) -> int:
        wd = self._fd.add_callback(os.fsencode(path), Mask(_MASK), _Folder(self, path, top), CallbackId(id(self)))
        with self._lock:
            self._watches[wd] = path
        return wd

    def alive(self) -> bool:
        # The kernel ends a watch whose folder is removed or unmounted (IN_IGNORED).
        return self._top in self._watches and self._fd.is_alive()

    def forget(self, wd) -> None:
        with self._lock:
            self._watches.pop(wd, None)

    def stop(self) -> None:
        with self._lock:
            watches, self._watches = list(self._watches), {}
        self._fd.remove_callbacks([(wd, CallbackId(id(self))) for wd in watches])


class _PollingHandler(FileSystemEventHandler):
    def __init__(self, watcher: PollingWatcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        _safely(self._on_event, event)

    def _on_event(self, event: FileSystemEvent) -> None:
        relative = os.path.relpath(os.fsdecode(event.dest_path or event.src_path), self.watcher.hot).split(os.sep)
        # A job is in the hot folder or one client folder down; the claim area and hidden folders are not.
        if isinstance(event, FileCreatedEvent) or event.event_type == "moved":
            if len(relative) <= 2 and not any(p.startswith(".") for p in relative) and is_job_name(relative[-1]):
                # A snapshot difference says nothing of a remote writer: only stability decides.
                self.watcher._report(os.path.join(self.watcher.hot, *relative), complete=False)


class PollingWatcher(Watcher):
    """watchdog's polling observer: for network shares, where other hosts' writes raise no events."""

    mode = "polling"

    def __init__(self, *args, poll_seconds: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._observer = PollingObserver(timeout=poll_seconds)
        self._observer.schedule(_PollingHandler(self), self.hot, recursive=True)

    def start(self) -> None:
        self._observer.start()

    def alive(self) -> bool:
        # watchdog's polling emitter stops for good when the folder it polls disappears.
        return self._observer.is_alive() and all(emitter.is_alive() for emitter in self._observer.emitters)

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=10)


def make_watcher(
    mode: str, hot: Path, tracker: StabilityTracker, on_folder: Callable[[str], None], on_overflow: Callable[[], None]
) -> Watcher:
    kind = PollingWatcher if mode == "polling" else InotifyWatcher
    return kind(hot, tracker, on_folder, on_overflow)
