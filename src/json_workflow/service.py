"""Service mode: recover, scan at startup, watch in real time, rescan periodically, process in batches.

Three ways in (startup scan, watcher events, periodic scan) feed one StabilityTracker; the main loop
takes what is complete and hands it to the pipeline at once, in batches of at most `batch_size`.
Signal handlers only set flags; the main loop does the work.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator

from json_workflow import config as config_module
from json_workflow import logs
from json_workflow.config import Config
from json_workflow.delivery.model import Delivery, Summary
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.errors import ConfigError, StillWriting
from json_workflow.intake import Source
from json_workflow.intake.scan import Candidate, candidate_at, is_job_name, scan
from json_workflow.intake.stability import StabilityTracker, ignore_lease_breaks
from json_workflow.intake.watch import Watcher, make_watcher
from json_workflow.logs import log
from json_workflow.notify import sd_notify, watchdog_interval
from json_workflow.reporting import figures
from json_workflow.reporting.reporter import Reporter
from json_workflow.run import check_hot_folder, exclusive
from json_workflow.store import stats

STATS_SECONDS = 60
REPORT_TICK_SECONDS = 30
MISSED_SCANS_BEFORE_POLLING = 3
# How often the main loop checks that the hot folder is the one it watches (a remount replaces it).
INTAKE_CHECK_SECONDS = 1.0
LOOP_ERROR_PAUSE = 1.0
# Settings that shape the process itself; a reload reports them and keeps the running values.
RESTART_KEYS = ("root", "paths", "workers", "watch")


class Service:
    """One long-running json-workflow for one hot folder."""

    def __init__(self, config: Config, config_path: str | None = None, root: str | None = None):
        self.config = config
        self.config_path, self.root = config_path, root
        self.stopping = threading.Event()
        self.stop_requested = False
        self.reload_requested = False
        self.rescan_requested = False
        self.queue: deque[tuple[str, Source]] = deque()
        self.attempts: Counter[str] = Counter()
        self.scans: Counter[str] = Counter()
        self.missed_streak = 0
        self._scan_thread: threading.Thread | None = None
        self.watcher: Watcher | None = None
        self.hot_identity: tuple[int, int] | None = None  # the hot folder watched: (device, inode)
        self.unwatchable: tuple[int, int] | None = None  # a hot folder that could not be watched, said once

    @property
    def watching(self) -> Watcher:
        """The watcher, once `_start_up` has started it."""
        assert self.watcher is not None, "the watcher is started by _start_up"
        return self.watcher

    # --- signals: flags only (a handler runs between any two bytecodes: it must take no lock) ------
    def _on_stop(self, signum, frame) -> None:
        self.stop_requested = True
        self.tracker.wake.set()

    def _on_reload(self, signum, frame) -> None:
        self.reload_requested = True
        self.tracker.wake.set()

    def _on_overflow(self) -> None:
        self.rescan_requested = True
        self.tracker.wake.set()

    # --- the main loop -------------------------------------------------------------------------
    def run(self) -> int:
        config = self.config
        check_hot_folder(config)
        self.tracker = StabilityTracker(config.stable_seconds)
        ignore_lease_breaks()
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        log.info("json-workflow starting: hot folder %s, %d routes", config.hot, len(config.routes))
        threading.Thread(target=self._shutdown_guard, name="shutdown", daemon=True).start()
        with exclusive(config) as journal:
            self.pipeline = Pipeline(config, journal)
            with journal.transaction() as db:
                run = stats.run_started(db, "service", time.time())
            try:
                self._serve()
            finally:
                self.stopping.set()  # the reporter stops, the shutdown guard starts counting
                sd_notify("STOPPING=1")
                journal.record(lambda db: stats.run_stopped(db, run, time.time()))
                if self.watcher is not None:
                    self.watcher.stop()
                self._handle(self.pipeline.drain(Summary()))
                self.pipeline.close()
                self.pipeline.claims.tidy()
        log.info("json-workflow stopped")
        return 0

    def _serve(self) -> None:
        startup = self._start_up()
        while not self.stop_requested:
            try:
                idle = self._step(startup)
            except Exception:  # one bad turn must not end the service: the next one may go through
                log.exception("Unexpected error in the main loop; it carries on in %gs", LOOP_ERROR_PAUSE)
                idle = LOOP_ERROR_PAUSE
            if idle > 0:
                self.tracker.wake.wait(idle)
                self.tracker.wake.clear()

    def _start_up(self) -> Iterator[tuple[Candidate, Source]]:
        """Watch, finish what a crash left, start the reporter; returns the startup scan, to be streamed."""
        config = self.config
        self.hot_identity = _identity(config.hot)
        self.watcher = self._watcher(config.watch)
        self._handle(self.pipeline.recover(Summary()))
        threading.Thread(target=self._report_loop, name="reporter", daemon=True).start()
        sd_notify("READY=1")
        log.info("Watching %s (%s) with a %gs periodic scan", config.hot, self.watcher.mode, config.scan_interval)
        now, beat = time.monotonic(), watchdog_interval()
        self.due = {
            "scan": now + config.scan_interval,
            "stats": now + STATS_SECONDS,
            "intake": now + INTAKE_CHECK_SECONDS,
            "beat": now if beat else float("inf"),
        }
        self.beat = beat or 0.0
        return self._startup_scan()

    def _step(self, startup: Iterator[tuple[Candidate, Source]]) -> float:
        """One turn of the main loop: what is due, then one batch; returns how long to wait (0: go on)."""
        now, due = time.monotonic(), self.due
        if self.reload_requested:
            self._reload()
        if now >= due["intake"]:
            self._check_intake()
            due["intake"] = now + INTAKE_CHECK_SECONDS
        if self.rescan_requested or now >= due["scan"]:
            self._start_scan()
            due["scan"] = now + self.config.scan_interval
        if now >= due["stats"]:
            self._log_stats()
            due["stats"] = now + STATS_SECONDS
        if now >= due["beat"]:
            sd_notify("WATCHDOG=1")
            due["beat"] = now + self.beat
        batch = self._next_batch(startup)
        if batch:
            self._process(batch)
            return 0.0
        self._handle(self.pipeline.drain(Summary()))  # idle: finish every batch in flight
        logs.flush()
        return min(self.tracker.next_due(), *(when - now for when in due.values()))

    def _next_batch(self, startup: Iterator[tuple[Candidate, Source]]) -> list[tuple[Candidate, Source]]:
        """Whatever is complete now, real time first, up to batch_size; never waits to fill a batch."""
        if self.tracker.release_due():
            self.pipeline.forget_trouble()  # retry time: try the troubled folders again
        self.queue.extend(self.tracker.ready())
        size = self.config.batch_size
        batch = [
            (candidate_at(self.config.hot, path), source)
            for path, source in (self.queue.popleft() for _ in range(min(size, len(self.queue))))
        ]
        if len(batch) < size:
            batch += itertools.islice(startup, size - len(batch))
        return batch

    def _process(self, batch: list[tuple[Candidate, Source]]) -> None:
        """Hand a batch to the pipeline; it is finished with the next batch, or when the service is idle."""
        self._handle(self.pipeline.submit(batch, Summary()))

    def _handle(self, finished: list[Delivery]) -> None:
        """Retry later what waits for its destination, with a growing delay; forget what is done."""
        for d in finished:
            if isinstance(d.waiting_on, StillWriting) and not d.left_claimed:
                self.tracker.seen(d.candidate.origin, d.source)  # taken again once closed, or stable
            elif d.waiting_on is not None and not d.left_claimed:
                self.attempts[d.candidate.origin] += 1
                delay = min(self.config.retry_max_seconds, 2.0 ** self.attempts[d.candidate.origin])
                self.tracker.hold(d.candidate.origin, d.source, delay)
            elif d.waiting_on is None:
                self.attempts.pop(d.candidate.origin, None)

    def _report_loop(self) -> None:
        """The daily report and alerts, in a thread of their own: a slow mail server never holds up files."""
        reporter = Reporter(self.config)
        try:
            self._report_tick(reporter)  # a report missed while the service was down goes out now
            log.info("%s", reporter.plan(time.time()))
            while not self.stopping.wait(REPORT_TICK_SECONDS):
                reporter.config = self.config  # a reload applies from the next tick
                self._report_tick(reporter)
        finally:
            reporter.close()

    def _report_tick(self, reporter: Reporter) -> None:
        try:
            reporter.tick()
        except Exception:  # a bug here must not end reporting for the rest of the service's life
            log.exception("Reporter failed; trying again in %ds", REPORT_TICK_SECONDS)

    def _shutdown_guard(self) -> None:
        """Exit anyway when a stop takes longer than shutdown_timeout (a hung mount, say)."""
        self.stopping.wait()
        time.sleep(self.config.shutdown_timeout)
        log.error(
            "Shutdown took over %gs; exiting now, the journal finishes the files in flight at the next start",
            self.config.shutdown_timeout,
        )
        logging.shutdown()
        os._exit(0)

    # --- intake ------------------------------------------------------------------------------
    def _watcher(self, mode: str) -> Watcher:
        watcher = make_watcher(mode, self.config.hot, self.tracker, self._new_folder, self._on_overflow)
        watcher.start()
        return watcher

    def _new_folder(self, folder: str) -> None:
        # Files written right after mkdir can beat the new watch; look inside at once (watchdog#990).
        for candidate in scan_folder(folder):
            self.tracker.seen(candidate, Source.REALTIME)

    def _startup_scan(self) -> Iterator[tuple[Candidate, Source]]:
        """Stream the startup backlog: files at rest go straight to batches, young ones to the tracker."""
        log.info("Starting startup scan of %s", self.config.hot)
        found = 0
        for candidate in scan(self.config.hot):
            found += 1
            try:
                age = time.time() - os.lstat(candidate.path).st_mtime
            except FileNotFoundError:
                continue
            if age >= self.config.stable_seconds and not candidate.symlink:
                yield candidate, Source.STARTUP
            else:
                self.tracker.seen(candidate.path, Source.STARTUP)
        log.info("Startup scan complete: %d files found", found)

    def _start_scan(self) -> None:
        self.rescan_requested = False
        if self._scan_thread and self._scan_thread.is_alive():
            self._scanned("skipped")
            log.warning("Periodic scan skipped: the previous one is still running")
            return
        self.scans["started"] += 1
        self._scan_thread = threading.Thread(
            target=self._periodic_scan, args=(self.scans["started"],), name="scan", daemon=True
        )
        self._scan_thread.start()

    def _periodic_scan(self, number: int) -> None:
        try:
            self._scan_once(number)
        except OSError as e:  # the hot folder went away mid-scan (an unmounted share): the next scan tries again
            self._scanned("abandoned")
            log.error("Periodic scan #%d abandoned: %s", number, e)

    def _scan_once(self, number: int) -> None:
        config, started = self.config, time.monotonic()
        reported = self.watching.take_reported()
        found = missed = 0
        for candidate in scan(config.hot):
            if time.monotonic() - started > config.scan_timeout:
                self._scanned("abandoned", time.monotonic() - started, found)
                log.error("Periodic scan #%d abandoned after %gs (scan_timeout)", number, config.scan_timeout)
                return
            path = candidate.path
            if path in self.tracker or self.tracker.is_held(path) or not self.tracker.seen(path, Source.PERIODIC):
                continue
            found += 1
            try:
                settled = time.time() - os.lstat(path).st_mtime > 2 * config.stable_seconds + 1
            except FileNotFoundError:
                continue
            missed += settled and path not in reported
        seconds = time.monotonic() - started
        self._scanned("completed", seconds, found, slow=seconds > config.slow_scan_seconds)
        if seconds > config.slow_scan_seconds:
            log.warning(
                "Periodic scan #%d was slow: %.1fs (slow_scan_seconds %g)", number, seconds, config.slow_scan_seconds
            )
        log.info(
            "Periodic scan #%d complete: %d files found, %d missed by events (%.2fs)", number, found, missed, seconds
        )
        self._check_events(missed)

    def _scanned(
        self, outcome: str, seconds: float | None = None, found: int | None = None, slow: bool = False
    ) -> None:
        self.scans[outcome] += 1
        self.scans["slow"] += slow
        now = time.time()
        self.pipeline.journal.record(lambda db: stats.scan(db, outcome, now, seconds, found, slow))

    def _check_intake(self) -> None:
        """Watch again when the hot folder was remounted or replaced, or its watch ended (a NAS reboot)."""
        hot, identity = self.config.hot, _identity(self.config.hot)
        if identity == self.hot_identity and self.watching.alive():
            return
        if identity is None:
            if self.hot_identity is not None:
                log.error("Hot folder %s is gone (an unmounted share?); files are taken again once it is back", hot)
                self.hot_identity = None
            return
        how = (
            "is back"
            if self.hot_identity is None
            else "was remounted or replaced"
            if identity != self.hot_identity
            else f"lost its {self.watching.mode} watch"
        )
        try:
            watcher = self._watcher(self.watching.mode)
        except OSError as e:  # tried again every second; said once
            if self.unwatchable != identity:
                log.error("Hot folder %s %s but cannot be watched yet: %s", hot, how, e)
                self.unwatchable = identity
            return
        old, self.watcher, self.hot_identity, self.unwatchable = self.watching, watcher, identity, None
        old.stop()
        self.pipeline.claims.forget_folders()
        self.pipeline.forget_trouble()
        self.rescan_requested = True
        log.warning(
            "Hot folder %s %s: watching it again (%s), the claim area is made again, and it is scanned",
            hot,
            how,
            watcher.mode,
        )

    def _check_events(self, missed: int) -> None:
        """Switch to polling when scans keep finding files no event reported (a network share)."""
        self.missed_streak = self.missed_streak + 1 if missed else 0
        if self.missed_streak >= MISSED_SCANS_BEFORE_POLLING and self.watching.mode == "inotify":
            log.warning(
                "%d periodic scans in a row found files that no event reported: events are not "
                "arriving (a network share?). Switching to polling.",
                self.missed_streak,
            )
            old, self.watcher = self.watching, self._watcher("polling")
            old.stop()

    # --- housekeeping --------------------------------------------------------------------------
    def _reload(self) -> None:
        self.reload_requested = False
        source = self.config_path or "built-in configuration"
        try:
            new = config_module.load(self.config_path, self.root)
            if problems := new.email.secret_problems():
                raise ConfigError(source, problems)
            kept = [key for key in RESTART_KEYS if getattr(new, key) != getattr(self.config, key)]
            new = new.model_copy(update={key: getattr(self.config, key) for key in kept})
            # The file was checked against its own folders; the new rules must suit the running ones too.
            config_module.check_folders(new, source)
        except ConfigError as e:
            log.error("Reload failed, keeping the running configuration: %s", e)
            return
        if kept:
            log.warning("Reload: %s cannot change while running; restart to apply", ", ".join(kept))
        self.config = new
        self._handle(self.pipeline.drain(Summary()))
        self.pipeline.reconfigure(new)
        self.tracker.stable_seconds = new.stable_seconds
        log.info("Configuration reloaded: %d routes", len(new.routes))

    def _log_stats(self) -> None:
        """Today's figures from the statistics rows, so a restart does not reset them."""
        zone = self.config.email.zone
        log.info("%s", self.pipeline.journal.query(lambda db: figures.stats_line(db, time.time(), zone)))


def _identity(folder) -> tuple[int, int] | None:
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
