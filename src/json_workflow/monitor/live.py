"""What a running service knows right now: counters, gauges, destinations in trouble, the latest activity.

The service updates a Monitor from its main thread, per batch and per turn; the web server, the
metrics and the saved live state read it from theirs. Nothing here touches the disk: /metrics must
never cost the files a scan.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from json_workflow.config import Config
from json_workflow.delivery.folders import folder_names
from json_workflow.delivery.model import Delivery, Outcome
from json_workflow.errors import DestinationError, StoreError
from json_workflow.layout import UNKNOWN_CLIENT
from json_workflow.logs import log
from json_workflow.monitor.state import Destination, Event, Live, last_scan_and_report
from json_workflow.names import shown
from json_workflow.routing.template import pattern
from json_workflow.store import Store
from json_workflow.store.rows import LiveRow

# file_seconds' buckets, claim to finish: a file takes milliseconds; a slow share, seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ACTIVITY = 200  # the latest events kept for the overview
# Client label values beyond this many are counted as "_other": a label per folder, never unbounded.
MAX_CLIENTS = 500
OTHER_CLIENTS = "_other"
ARCHIVE, FAILED = "archive", "failed"  # the destinations that are not rules, by the names they show under
_ARCHIVED, _FAILED, _PENDING, _SUPERSEDED = Outcome.ARCHIVED, Outcome.FAILED, Outcome.PENDING, Outcome.SUPERSEDED


class Monitor:
    """The service's live state and its in-memory counters (the /metrics counters start at 0 at each start)."""

    def __init__(self, config: Config, instance: str, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.instance = instance
        self.started = self.beat = clock()
        self.watch: str = config.watch
        self.watcher_alive, self.hot_ok = True, True
        self.waiting = self.claimed = self.pending = 0
        self.files: Counter[tuple[str, str]] = Counter()
        self.copies: Counter[str] = Counter()
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds_sum = 0.0
        self.scans: Counter[str] = Counter({"completed": 0, "skipped": 0, "abandoned": 0})
        self.last_scan: dict[str, Any] | None = None
        self.report: dict[str, Any] | None = None
        self.activity: deque[Event] = deque(maxlen=ACTIVITY)
        self._seq = itertools.count(1)
        self._troubles: dict[str, Destination] = {}  # trouble folder -> its state
        self._lock = threading.Lock()
        self.changed = False  # a count `status` shows changed since the state was saved
        self.urgent = False  # a destination (or the hot folder) changed state: saved at once
        self.recovered: list[tuple[str, float | None]] = []  # of the batch `finished` last counted
        self.clients: set[str] = {UNKNOWN_CLIENT}
        self.sends: dict[str, list[float]] = {}  # rule -> send_seconds' bucket counts, then their sum
        self.held_by: Counter[str] = Counter()  # trouble folder (or URL) -> files waiting for it
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Known label values from the configuration and the hot folder; zeros for the series known in advance."""
        with self._lock:
            self.config = config
            self.clients.update(shown(name) for name in folder_names(config.hot))
            for client in self.clients:
                for outcome in (_ARCHIVED, _FAILED):
                    self.files.setdefault((client, str(outcome)), 0)
            for rule in config.routes:
                self.copies.setdefault(rule.name, 0)

    # --- updates, from the service's main thread ----------------------------------------------
    def finished(self, deliveries: Iterable[Delivery]) -> list[tuple[str, float | None]]:
        """Count the files a batch finished, and learn from them which destinations work; returns the
        destinations in trouble that work again, as (folder, since when they were in trouble)."""
        now = self.clock()
        self.recovered = []
        with self._lock:
            for d in deliveries:
                for rule, seconds in d.sent:
                    sends = self.sends.setdefault(rule, [0.0] * (len(BUCKETS) + 2))
                    sends[bisect.bisect_left(BUCKETS, seconds)] += 1
                    sends[-1] += seconds
                outcome = d.outcome
                if outcome == _PENDING:  # the destination's trouble is an event once, not each file's retry
                    if isinstance(d.waiting_on, DestinationError):
                        self._trouble(d.waiting_on, now)
                    continue
                if outcome == _SUPERSEDED:  # counted apart: the newer version is the job
                    self.files[(self._client(d), str(outcome))] += 1
                    continue
                if outcome != _ARCHIVED and outcome != _FAILED:
                    continue
                self.files[(self._client(d), str(outcome))] += 1
                self.buckets[bisect.bisect_left(BUCKETS, d.seconds)] += 1
                self.seconds_sum += d.seconds
                if outcome == _FAILED:
                    assert d.rejection is not None
                    self._working(os.path.dirname(d.failed_as or ""))
                    text = f"{d.candidate.display} failed at {d.rejection.stage}: {d.rejection.reason}"
                    self._event(now, "failed", text, d.row)
                    continue
                for destination in d.destinations:
                    self._working(destination.shown)  # a URL's trouble is known by its URL as shown
                    if not destination.is_archive:
                        for rule in destination.reasons:
                            self.copies[rule] += 1
                self._event(now, "archived", f"{d.candidate.display} archived", d.row)
        return self.recovered

    def held(self, trouble: DestinationError, seconds: float) -> None:
        """A file waits for `trouble`'s folder; it is tried again in `seconds`."""
        with self._lock:
            self._trouble(trouble, self.clock()).next_retry = self.clock() + seconds

    def scanned(self, outcome: str, seconds: float | None, found: int | None) -> None:
        with self._lock:
            self.scans[outcome] += 1
            self.last_scan = {"at": self.clock(), "outcome": outcome, "seconds": seconds, "found": found}

    def report_sent(self, day: str, at: float) -> None:
        with self._lock:
            self.report = {"day": day, "sent": at}
            self._event(at, "info", f"Daily report for {day} sent")

    def note(self, text: str, kind: str = "info") -> None:
        """An event for the overview's activity (a reload, a remount, a start)."""
        with self._lock:
            self._event(self.clock(), kind, text)

    def turn(self, waiting: int, claimed: int, pending: int, watcher_alive: bool, watch: str | None = None) -> None:
        """The main loop's heartbeat, with the counts it knows and its watch mode (it may switch to polling)."""
        counts = (waiting, claimed, pending, watcher_alive, watch or self.watch)
        if counts != (self.waiting, self.claimed, self.pending, self.watcher_alive, self.watch):
            self.changed = True
        self.waiting, self.claimed, self.pending, self.watcher_alive, self.watch = counts
        self.beat = self.clock()

    def intake(self, ok: bool) -> None:
        self.urgent |= ok != self.hot_ok
        self.hot_ok = ok

    # --- reading, from any thread -------------------------------------------------------------
    def snapshot(self, activity: int = 0) -> Live:
        """The live state now, with the latest `activity` events, newest first."""
        with self._lock:
            events = list(itertools.islice(reversed(self.activity), activity))
            return Live(
                instance=self.instance,
                pid=os.getpid(),
                started=self.started,
                beat=self.beat,
                watch=self.watch,
                watcher_alive=self.watcher_alive,
                hot_ok=self.hot_ok,
                waiting=self.waiting,
                claimed=self.claimed,
                pending=self.pending,
                destinations=self._destinations(),
                last_scan=dict(self.last_scan) if self.last_scan else None,
                scans=dict(self.scans),
                report=dict(self.report) if self.report else None,
                activity=events,
            )

    def counters(self) -> tuple[dict[tuple[str, str], int], dict[str, int], list[int], float]:
        """files by (client, outcome), copies by rule, file_seconds' bucket counts and sum: copies, taken at once."""
        with self._lock:
            return dict(self.files), dict(self.copies), list(self.buckets), self.seconds_sum

    def send_counters(self) -> dict[str, list[float]]:
        """send_seconds by rule: its bucket counts, then their sum."""
        with self._lock:
            return {rule: list(counts) for rule, counts in self.sends.items()}

    def holding(self, held_by: Counter[str]) -> None:
        """How many files wait for each destination in trouble (Waiting's count, after each batch)."""
        with self._lock:
            self.held_by = Counter(held_by)

    def events_after(self, seq: int) -> list[Event]:
        """Events newer than `seq`, oldest first (for the overview's live updates)."""
        with self._lock:
            return [e for e in self.activity if e.seq > seq]

    # --- the store: saved for `status`, the last scan and report read at start -------------------
    def save(self, store: Store) -> None:
        """Save the live state (a failure is logged by the store: it is only for `status`)."""
        self.changed = self.urgent = False
        live = self.snapshot()
        store.save_live(LiveRow(live.instance, live.pid, live.started, live.beat, json.dumps(live.as_dict())))

    def restore(self, store: Store) -> None:
        """The last scan and report from before this start, which the overview shows until the next ones."""
        try:
            scan, report = last_scan_and_report(store)
        except StoreError as e:  # figures for the overview only
            log.warning("Cannot read the last scan and report from the statistics: %s", e)
            return
        with self._lock:
            self.last_scan, self.report = scan or self.last_scan, report or self.report

    # --- inside the lock ------------------------------------------------------------------------
    def _client(self, d: Delivery) -> str:
        """The file's client as the statistics have it (stats, status): its ClientCode's folder once parsed, else
        its client folder, else _unknown (a file at the top of the hot folder that could not be parsed)."""
        folder = d.job.client if d.job is not None else d.candidate.folder
        label = UNKNOWN_CLIENT if folder is None else shown(folder)
        if label not in self.clients:
            if len(self.clients) >= MAX_CLIENTS:
                return OTHER_CLIENTS
            self.clients.add(label)
        return label

    def _trouble(self, trouble: DestinationError, now: float) -> Destination:
        known = self._troubles.get(trouble.folder)
        if known is None:
            known = self._troubles[trouble.folder] = Destination(trouble.folder, [], "trouble", str(trouble), now)
            self._event(now, "warning", f"Destination in trouble: {trouble}")
            self.urgent = True
        known.error = str(trouble)
        return known

    def _working(self, folder: str) -> None:
        if self._troubles and (was := self._troubles.pop(folder, None)) is not None:
            self._event(self.clock(), "info", f"Destination working again: {shown(folder)}")
            self.recovered.append((folder, was.since))
            self.urgent = True

    def _event(self, at: float, kind: str, text: str, file: int | None = None) -> None:
        self.activity.append(Event(next(self._seq), at, kind, text, file))

    def _destinations(self) -> list[Destination]:
        """Every configured destination, each with the worst trouble of the folders below it."""
        config = self.config
        places: dict[str, Destination] = {str(config.archive): Destination(str(config.archive), [ARCHIVE])}
        for rule in config.routes:
            folder = rule.endpoint.shown() if rule.endpoint else str(config.folder(rule.destination))
            places.setdefault(folder, Destination(folder, [])).rules.append(rule.name)
        places.setdefault(str(config.failed), Destination(str(config.failed), [FAILED]))
        for folder, trouble in self._troubles.items():
            place = places.get(folder) or _container(places, folder)
            if place is None:  # a folder no configured one names: shown on its own
                place = places[folder] = Destination(folder, [])
            place.held += self.held_by.get(folder, 0)
            if place.state == "ok" or (trouble.since or 0) < (place.since or 0):
                place.state, place.error, place.since = "trouble", trouble.error, trouble.since
                place.next_retry = trouble.next_retry
        return list(places.values())


def _container(places: dict[str, Destination], folder: str) -> Destination | None:
    """The configured destination `folder` is inside (the archive's client folders, the failed folder's)."""
    path = Path(folder)
    for place, destination in places.items():
        if path.is_relative_to(place) or ("{" in place and pattern(place).fullmatch(folder)):
            return destination
    return None
