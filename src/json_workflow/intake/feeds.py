"""The service's three ways in: the startup scan, the watcher's events, the periodic safety scan.

All three feed one StabilityTracker; the service's main loop takes from it what is complete. The
feeds also keep the watch alive: a remounted or replaced hot folder is watched again, and a watch that
misses files scan after scan (a network share) gives way to polling.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from json_workflow.config import Config
from json_workflow.intake import ScanOutcome, Source
from json_workflow.intake.scan import Candidate, is_job_name, scan
from json_workflow.intake.stability import StabilityTracker
from json_workflow.intake.watch import Watcher, make_watcher
from json_workflow.logs import log
from json_workflow.plural import count

MISSED_SCANS_BEFORE_POLLING = 3

# Called with each periodic scan's outcome (completed, skipped, abandoned), seconds, files found, slow.
ScanRecorder = Callable[[str, float | None, int | None, bool], None]


class Feeds:
    """Watcher, startup scan and periodic scans of one hot folder, feeding `tracker`."""

    def __init__(
        self,
        config: Config,
        tracker: StabilityTracker,
        record_scan: ScanRecorder,
        on_rewatch: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.config = config  # replaced on reload
        self.tracker = tracker
        self.record_scan = record_scan
        self.on_rewatch = on_rewatch  # the hot folder was replaced: forget what was made in the old one
        self.clock, self.wall = clock, wall
        self.watcher: Watcher | None = None
        self.rescan_requested = False
        self.scans: Counter[str] = Counter()
        self.missed_streak = 0
        self._scan_thread: threading.Thread | None = None
        self.hot_identity: tuple[int, int] | None = None  # the hot folder watched: (device, inode)
        self.unwatchable: tuple[int, int] | None = None  # a hot folder that could not be watched, said once

    @property
    def watching(self) -> Watcher:
        """The watcher, once `start` has started it."""
        assert self.watcher is not None, "the watcher is started by Feeds.start"
        return self.watcher

    def start(self) -> None:
        """Watch the hot folder in the configured mode."""
        self.hot_identity = _identity(self.config.hot)
        self.watcher = self.start_watcher(self.config.watch)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def start_watcher(self, mode: str) -> Watcher:
        watcher = make_watcher(mode, self.config.hot, self.tracker, self._new_folder, self.request_rescan)
        watcher.start()
        return watcher

    def request_rescan(self) -> None:
        """Scan at once (the kernel's event queue overflowed: events were lost)."""
        self.rescan_requested = True
        self.tracker.wake.set()

    def _new_folder(self, folder: str) -> None:
        # Files written right after mkdir can beat the new watch; look inside at once (watchdog#990).
        for path in scan_folder(folder):
            self.tracker.seen(path, Source.REALTIME)

    # --- scans ---------------------------------------------------------------------------------
    def startup(self) -> Iterator[tuple[Candidate, Source]]:
        """Stream the startup backlog: files at rest go straight to batches, young ones to the tracker."""
        log.info("Starting startup scan of %s", self.config.hot)
        found = 0
        for candidate in scan(self.config.hot):
            found += 1
            try:
                age = self.wall() - os.lstat(candidate.path).st_mtime
            except FileNotFoundError:
                continue
            if age >= self.config.stable_seconds and not candidate.symlink:
                yield candidate, Source.STARTUP
            else:
                self.tracker.seen(candidate.path, Source.STARTUP)
        log.info("Startup scan complete: %s found", count(found, "file"))

    def start_scan(self) -> None:
        """A periodic scan, in a thread of its own; skipped while the previous one still runs."""
        self.rescan_requested = False
        if self._scan_thread and self._scan_thread.is_alive():
            self._scanned(ScanOutcome.SKIPPED)
            log.warning("Periodic scan skipped: the previous one is still running")
            return
        self.scans["started"] += 1
        self._scan_thread = threading.Thread(
            target=self.periodic_scan, args=(self.scans["started"],), name="scan", daemon=True
        )
        self._scan_thread.start()

    def periodic_scan(self, number: int) -> None:
        try:
            self._scan_once(number)
        except OSError as e:  # the hot folder went away mid-scan (an unmounted share): the next scan tries again
            self._scanned(ScanOutcome.ABANDONED)
            log.error("Periodic scan #%d abandoned: %s", number, e)

    def _scan_once(self, number: int) -> None:
        config, started = self.config, self.clock()
        reported = self.watching.take_reported()
        found = missed = 0
        for candidate in scan(config.hot):
            if self.clock() - started > config.scan_timeout:
                self._scanned(ScanOutcome.ABANDONED, self.clock() - started, found)
                log.error("Periodic scan #%d abandoned after %gs (scan_timeout)", number, config.scan_timeout)
                return
            path = candidate.path
            if path in self.tracker or self.tracker.is_held(path) or not self.tracker.seen(path, Source.PERIODIC):
                continue
            found += 1
            try:
                settled = self.wall() - os.lstat(path).st_mtime > 2 * config.stable_seconds + 1
            except FileNotFoundError:
                continue
            missed += settled and path not in reported
        seconds = self.clock() - started
        slow = seconds > config.slow_scan_seconds
        self._scanned(ScanOutcome.COMPLETED, seconds, found, slow)
        if slow:
            log.warning(
                "Periodic scan #%d was slow: %.1fs (slow_scan_seconds %g)", number, seconds, config.slow_scan_seconds
            )
        log.info(
            "Periodic scan #%d complete: %s found, %d missed by events (%.2fs)",
            number,
            count(found, "file"),
            missed,
            seconds,
        )
        self.check_events(missed)

    def _scanned(
        self, outcome: ScanOutcome, seconds: float | None = None, found: int | None = None, slow: bool = False
    ) -> None:
        self.scans[outcome] += 1
        self.scans["slow"] += slow
        self.record_scan(outcome, seconds, found, slow)

    # --- keeping the watch alive -------------------------------------------------------------------
    def check_intake(self) -> None:
        """Watch again when the hot folder was remounted or replaced, or its watch ended (a NAS reboot)."""
        hot, identity = self.config.hot, _identity(self.config.hot)
        if identity == self.hot_identity and self.watching.alive():
            return
        if identity is None:
            if self.hot_identity is not None:
                log.error("Hot folder %s is gone (an unmounted share?); files are taken again once it is back", hot)
                self.hot_identity = None
            return
        if self.hot_identity is None:
            how = "is back"
        elif identity != self.hot_identity:
            how = "was remounted or replaced"
        else:
            how = f"lost its {self.watching.mode} watch"
        try:
            watcher = self.start_watcher(self.watching.mode)
        except OSError as e:  # tried again every second; said once
            if self.unwatchable != identity:
                log.error("Hot folder %s %s but cannot be watched yet: %s", hot, how, e)
                self.unwatchable = identity
            return
        old, self.watcher, self.hot_identity, self.unwatchable = self.watching, watcher, identity, None
        old.stop()
        self.on_rewatch()
        self.rescan_requested = True
        log.warning(
            "Hot folder %s %s: watching it again (%s), the claim area is made again, and it is scanned",
            hot,
            how,
            watcher.mode,
        )

    def check_events(self, missed: int) -> None:
        """Switch to polling when scans keep finding files no event reported (a network share)."""
        self.missed_streak = self.missed_streak + 1 if missed else 0
        if self.missed_streak >= MISSED_SCANS_BEFORE_POLLING and self.watching.mode == "inotify":
            log.warning(
                "%d periodic scans in a row found files that no event reported: events are not "
                "arriving (a network share?). Switching to polling.",
                self.missed_streak,
            )
            old, self.watcher = self.watching, self.start_watcher("polling")
            old.stop()


def _identity(folder: os.PathLike[str] | str) -> tuple[int, int] | None:
    """The folder's (device, inode): another after a remount or a replacement; None when it is gone."""
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def scan_folder(folder: str) -> Iterator[str]:
    """Job files directly in one client folder."""
    try:
        with os.scandir(folder) as entries:
            yield from (e.path for e in entries if is_job_name(e.name) and not e.is_dir(follow_symlinks=False))
    except OSError:
        return
