"""Real-time intake: watchdog's observer (inotify, or polling for network shares) feeding the tracker.

What watchdog 7.1 reports on Linux (checked on this kind of machine): a file written in place gives
created ... closed; a file renamed in from outside the tree gives a lone created; a temporary renamed
within the tree gives moved; files written into a just-created folder often arrive without their
closed; and an inotify queue overflow is only logged. So: closed and moved mean complete, created
means "watch its size", a new folder is scanned at once, and an overflow asks for a full rescan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from json_workflow.claim import AREA
from json_workflow.intake import is_job_name
from json_workflow.stability import StabilityTracker

REALTIME = "REALTIME"
# Fewer kinds of events asked for means fewer queued in the kernel (and fewer overflows).
EVENTS = [FileCreatedEvent, FileClosedEvent, FileMovedEvent, DirCreatedEvent, DirMovedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, hot: Path, tracker: StabilityTracker, on_folder: Callable[[str], None], local: bool):
        self.hot = str(hot)
        self.local = local  # inotify: a created event is a local event; polling: a snapshot difference
        self.tracker = tracker
        self.on_folder = on_folder
        self.reported: set[str] = set()  # paths events told us about, for the scans' "missed" count

    def _wanted(self, path: str) -> bool:
        relative = os.path.relpath(path, self.hot)
        parts = relative.split(os.sep)
        # A job is in the hot folder or one client folder down; the claim area and hidden folders are not ours.
        return len(parts) <= 2 and not any(p.startswith(".") for p in parts) and is_job_name(parts[-1])

    def _report(self, path: str, complete: bool) -> None:
        if self._wanted(path):
            self.reported.add(path)
            self.tracker.seen(path, REALTIME, complete, local=self.local)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self._report(event.src_path, complete=True)
        elif isinstance(event, FileMovedEvent):
            self._report(event.dest_path, complete=True)
        elif isinstance(event, FileCreatedEvent):
            self._report(event.src_path, complete=False)
        elif isinstance(event, DirCreatedEvent | DirMovedEvent):
            folder = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            if os.path.dirname(folder) == self.hot and not os.path.basename(folder).startswith("."):
                self.on_folder(folder)


class _OverflowWatch(logging.Handler):
    """watchdog only logs an inotify queue overflow; this turns the log line into a rescan."""

    def __init__(self, on_overflow: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()


class Watcher:
    """Watches the hot folder and its client folders; `stop()` ends it."""

    def __init__(self, hot: Path, mode: str, tracker: StabilityTracker,
                 on_folder: Callable[[str], None], on_overflow: Callable[[], None], poll_seconds: float = 1.0):
        self.mode = mode
        self.handler = _Handler(hot, tracker, on_folder, local=mode != "polling")
        self.observer = PollingObserver(timeout=poll_seconds) if mode == "polling" else InotifyObserver()
        self.observer.schedule(self.handler, str(hot), recursive=True, event_filter=EVENTS)
        self._overflow = _OverflowWatch(on_overflow)
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).addHandler(self._overflow)

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).removeHandler(self._overflow)
        self.observer.stop()
        self.observer.join(timeout=10)

    def take_reported(self) -> set[str]:
        """The paths events reported since the last call (for counting what scans found that events missed)."""
        reported, self.handler.reported = self.handler.reported, set()
        return reported
