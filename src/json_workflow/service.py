"""Service mode: recover, scan at startup, watch in real time, rescan periodically, process in batches.

Three feeds (intake/feeds.py) fill one StabilityTracker; the main loop takes what is complete and
hands it to the pipeline at once, in batches of at most `batch_size`. Signal handlers only set flags;
the main loop does the work. A test can build a Service, `attach` a journal and `step` it.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from json_workflow import config as config_module
from json_workflow import logs
from json_workflow.config import Config
from json_workflow.delivery.model import Delivery, Summary
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.delivery.processes import BACKLOG, batch_files
from json_workflow.delivery.shared import SharedPipeline, service_pipeline
from json_workflow.delivery.takeover import take_over
from json_workflow.errors import ConfigError
from json_workflow.intake import Source
from json_workflow.intake.feeds import Feeds
from json_workflow.intake.scan import Candidate, candidate_at
from json_workflow.intake.stability import StabilityTracker, ignore_lease_breaks
from json_workflow.logs import log
from json_workflow.monitor.live import Monitor
from json_workflow.notify import sd_notify, watchdog_interval
from json_workflow.plural import count
from json_workflow.replay import recent_effect, rules_changed
from json_workflow.reporting import figures
from json_workflow.reporting.reporter import report_forever
from json_workflow.run import check_hot_folder, holding
from json_workflow.store import Store
from json_workflow.waiting import Waiting
from json_workflow.web import start_web

if TYPE_CHECKING:
    from json_workflow.store.fleet import Membership

STATS_SECONDS = 60
# How often the live state is saved for `status` and a dashboard run apart from the service: at once when a
# destination changes state, within LIVE_CHANGED when a count does (each save adds to the batches' flushes:
# at every batch it lengthened a lone file's slowest latencies), every LIVE_SECONDS anyway.
LIVE_SECONDS, LIVE_CHANGED = 5.0, 2.0
# How often the main loop checks that the hot folder is the one it watches (a remount replaces it).
INTAKE_CHECK_SECONDS = 1.0
LOOP_ERROR_PAUSE = 1.0
# The exit status of an instance another took over (a lost lease): systemd starts it again, and it rejoins.
EXIT_TAKEN_OVER = 75

Startup = Iterator[tuple[Candidate, Source]]


class Service:
    """One long-running json-workflow for one hot folder."""

    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        root: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        make_pipeline: Callable[[Config, Store], Pipeline | SharedPipeline] | None = None,
    ):
        self.config = config
        self.config_path, self.root = config_path, root
        self.clock = clock
        self.make_pipeline = make_pipeline or (lambda c, store: service_pipeline(c, store, self.tracker.wake.set))
        self.stopping = threading.Event()
        self.stop_requested = False
        self.reload_requested = False
        self.queue: deque[tuple[str, Source, bool]] = deque()
        self.tracker = StabilityTracker(config.stable_seconds, clock)
        self.feeds = Feeds(config, self.tracker, self._record_scan, self._rewatched, clock)
        self.due: dict[str, float] = {}
        self.beat = 0.0
        self.monitor = Monitor(config, config.instance)
        self.waiting = Waiting(config, self.tracker, self.monitor)
        self.saved = 0.0  # when the live state was saved last
        self.membership: Membership | None = None  # a fleet's (store.fleet); None alone
        self.exit_code = 0

    def attach(self, journal: Store, membership: Membership | None = None) -> None:
        """Work with `journal` (the state folder's lock, or a fleet's membership, is held): the pipeline is made."""
        self.journal, self.membership = journal, membership
        self.pipeline = self.make_pipeline(self.config, journal)

    # --- signals: flags only (a handler runs between any two bytecodes: it must take no lock) ------
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        self.tracker.wake.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested = True
        self.tracker.wake.set()

    # --- the process -------------------------------------------------------------------------------
    def run(self) -> int:
        config = self.config
        check_hot_folder(config)
        ignore_lease_breaks()
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        log.info(
            "json-workflow starting as instance %s: hot folder %s, %s, store %s",
            config.instance,
            config.hot,
            count(len(config.routes), "route"),
            config.store.shown(),
            extra=logs.SUMMARY,
        )
        threading.Thread(target=self._shutdown_guard, name="shutdown", daemon=True).start()
        with holding(config, lambda: self.stop_requested) as (journal, membership):
            self.attach(journal, membership)
            run = journal.run_started("service", time.time())
            web = start_web(config, self.monitor, lambda: self.config)
            try:
                self._loop(self.start_up())
            finally:
                self.stopping.set()  # the reporter stops, the shutdown guard starts counting
                sd_notify("STOPPING=1")
                journal.run_stopped(run, time.time())
                self.shut_down()
                if web is not None:
                    web.stop()
        log.info("json-workflow stopped", extra=logs.SUMMARY)
        return self.exit_code

    def start_up(self, report: bool = True) -> Startup:
        """Watch, finish what a crash left, start the reporter; returns the startup scan, to be streamed."""
        config = self.config
        self.feeds.start()
        self._handle(self.pipeline.recover(Summary()))
        self.monitor.restore(self.journal)
        self.monitor.note(f"json-workflow started, watching {config.hot} ({self.feeds.watching.mode})")
        if report:
            threading.Thread(
                target=report_forever,
                args=(lambda: self.config, self.stopping, self.monitor.report_sent),
                name="reporter",
                daemon=True,
            ).start()
        sd_notify("READY=1")
        log.info(
            "Watching %s (%s) with a %gs periodic scan", config.hot, self.feeds.watching.mode, config.scan_interval
        )
        now, beat = self.clock(), watchdog_interval()
        self.due = {
            "scan": now + config.scan_interval,
            "stats": now + STATS_SECONDS,
            "intake": now + INTAKE_CHECK_SECONDS,
            "beat": now if beat else float("inf"),
            "live": now,
        }
        self.beat = beat or 0.0
        return self.feeds.startup()

    def _loop(self, startup: Startup) -> None:
        while not self.stop_requested:
            try:
                idle = self.step(startup)
            except Exception:  # one bad turn must not end the service: the next one may go through
                log.exception("Unexpected error in the main loop; it carries on in %gs", LOOP_ERROR_PAUSE)
                idle = LOOP_ERROR_PAUSE
            if idle > 0:
                self.tracker.wake.wait(idle)
                self.tracker.wake.clear()

    def step(self, startup: Startup) -> float:
        """One turn of the main loop: what is due, then one batch; returns how long to wait (0: go on)."""
        now, due = self.clock(), self.due
        if self.reload_requested:
            self._reload()
        if self.membership is not None and self._fleet_turn():
            return 0.0
        if now >= due["intake"]:
            self.feeds.check_intake()
            self.monitor.intake(self.feeds.hot_identity is not None)
            due["intake"] = now + INTAKE_CHECK_SECONDS
        if self.feeds.rescan_requested or now >= due["scan"]:
            self.feeds.start_scan()
            due["scan"] = now + self.config.scan_interval
        if now >= due["stats"]:
            self._log_stats()
            due["stats"] = now + STATS_SECONDS
        if now >= due["beat"]:
            sd_notify("WATCHDOG=1")
            due["beat"] = now + self.beat
        self._turn()
        batch = self._next_batch(startup)
        if batch:
            self._handle(self.pipeline.submit(batch, Summary()))  # finished with the next batch, or when idle
            self._live()
            return 0.0
        self._handle(self.pipeline.idle(Summary()))  # idle: finish every batch in flight
        self._live()
        logs.flush()
        return min(self.tracker.next_due(), *(when - now for when in due.values()))

    def _live(self) -> None:
        """Save the live state for `status`: at once when a destination (or the hot folder) changed state, soon
        when a count did, and every LIVE_SECONDS anyway (the heartbeat other processes read)."""
        now, monitor = self.clock(), self.monitor
        if monitor.urgent or now >= self.due["live"] or (monitor.changed and now >= self.saved + LIVE_CHANGED):
            monitor.save(self.journal)
            self.saved, self.due["live"] = now, now + LIVE_SECONDS

    def shut_down(self) -> None:
        """Stop watching, finish the batches in flight, tidy the claim area."""
        self.feeds.stop()
        self._handle(self.pipeline.drain(Summary()))
        self.pipeline.close()
        self.pipeline.claims.tidy()
        self._turn()
        self.monitor.save(self.journal)

    # --- batches -----------------------------------------------------------------------------------
    def _next_batch(self, startup: Startup) -> list[tuple[Candidate, Source]]:
        """Whatever is complete now, real time first, up to batch_size (more in a backlog); never waits to fill one."""
        if self.membership is not None and not self.membership.fence.held.is_set():
            return []  # no lease, no claim: the files wait in the hot folder
        if self.tracker.release_due():
            self.pipeline.forget_trouble()  # retry time: try the troubled folders again
        self.queue.extend(self.tracker.ready())
        self.pipeline.expect(len(self.queue))
        width, hot = self.pipeline.width(), self.config.hot
        size = batch_files(self.config.batch_size, len(self.queue)) * width
        batch = [
            (candidate_at(hot, path, symlink), source)
            for path, source, symlink in (self.queue.popleft() for _ in range(min(size, len(self.queue))))
        ]
        size = batch_files(self.config.batch_size, BACKLOG) * width  # what the startup scan finds is a backlog
        return batch + list(itertools.islice(startup, max(0, size - len(batch))))

    def _handle(self, finished: list[Delivery]) -> None:
        """Count what a batch finished, retry later what waits; the gauges are current when a batch ends."""
        self.waiting.finished(finished)
        self._turn()

    def _record_scan(self, outcome: str, seconds: float | None, found: int | None, slow: bool) -> None:
        now = time.time()
        self.journal.record_scan(outcome, now, seconds, found, slow)
        self.monitor.scanned(outcome, seconds, found)

    def _rewatched(self) -> None:
        """The hot folder was replaced: the claim area and destination folders are made again."""
        self.pipeline.forget_folders()
        self.pipeline.forget_trouble()

    # --- the fleet ----------------------------------------------------------------------------------
    def _fleet_turn(self) -> bool:
        """Take over the dead instances the lease found; True when this one was taken over (it stops)."""
        membership = self.membership
        assert membership is not None
        if membership.fence.lost is not None:  # said once: the pipeline stays quiet about its files from now on
            log.warning(
                "Stopping (exit %d): %s; restarted, it rejoins the fleet", EXIT_TAKEN_OVER, membership.fence.lost
            )
            self.exit_code, self.stop_requested = EXIT_TAKEN_OVER, True
            return True
        if membership.found:
            self._handle(self.pipeline.drain(Summary()))
            self._handle(take_over(membership, self.pipeline))
        return False

    # --- reload, stats line, shutdown guard -----------------------------------------------
    def _reload(self) -> None:
        """Apply the configuration file again; keys that shape the process keep their running values."""
        self.reload_requested = False
        try:
            new, kept = config_module.reload(self.config, self.config_path, self.root)
        except ConfigError as e:
            log.error("Reload failed, keeping the running configuration: %s", e)
            return
        if kept:
            log.warning("Reload: %s cannot change while running; restart to apply", ", ".join(kept))
        old, self.config = self.config, new
        self.feeds.config = self.waiting.config = new
        if self.membership is not None and new.report_settings != old.report_settings:
            self.membership.report_changed(new.report_settings)  # who can mail the fleet's report
        self._handle(self.pipeline.drain(Summary()))
        self.pipeline.reconfigure(new)
        self.tracker.stable_seconds = new.stable_seconds
        self.monitor.configure(new)
        log.info("Configuration reloaded: %s", count(len(new.routes), "route"))
        if (change := rules_changed(old, new)) is not None:
            log.info("Reload: %s", change)
            # Reading a week of the archive takes seconds: beside the files, never in their way.
            threading.Thread(target=self._log_effect, args=(old, new), name="replay", daemon=True).start()
        self.monitor.note(f"Configuration reloaded: {count(len(new.routes), 'route')}")

    # --- the live state ----------------------------------------------------------------------------
    def _turn(self) -> None:
        """The heartbeat, with what the main loop holds: seen, claimed, waiting for a destination."""
        tracker, watching = self.tracker, self.feeds.watching
        waiting = len(tracker) + len(self.queue)
        self.monitor.turn(waiting, self.pipeline.claimed(), tracker.holding, watching.alive(), watching.mode)

    def _log_effect(self, old: Config, new: Config) -> None:
        try:
            log.info("Reload: %s", recent_effect(old, new, time.time()))
        except Exception:  # an account of the change only: the change itself is made
            log.exception("Reload: cannot replay the last days of the archive")

    def _log_stats(self) -> None:
        """Today's figures from the statistics rows, so a restart does not reset them."""
        zone = self.config.email.zone
        log.info("%s", figures.stats_line(self.journal, time.time(), zone), extra=logs.SUMMARY)

    def _shutdown_guard(self) -> None:
        """Exit anyway when a stop takes longer than shutdown_timeout from its request (a hung mount or worker)."""
        while not (self.stop_requested or self.stopping.wait(0.5)):  # a signal handler sets a flag only
            pass
        time.sleep(self.config.shutdown_timeout)
        log.error(
            "Shutdown took over %gs; exiting now, the journal finishes the files in flight at the next start",
            self.config.shutdown_timeout,
        )
        logging.shutdown()
        os._exit(0)
