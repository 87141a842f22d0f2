"""The status of a data root as another process sees it: the service's saved live state and the store's figures.

`json-workflow status` and a dashboard run apart from the service read it; the service's own pages
read its Monitor instead, which is the same state a few seconds fresher.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from json_workflow.config import Config
from json_workflow.layout import UNKNOWN_CLIENT
from json_workflow.monitor.fleet import Instance, instances
from json_workflow.monitor.health import HEARTBEAT_LIMIT
from json_workflow.monitor.state import Live, last_scan_and_report
from json_workflow.names import shown
from json_workflow.plural import count, plural
from json_workflow.reporting import figures
from json_workflow.run import lock_holder
from json_workflow.store import Store, has_store, open_store
from json_workflow.store.rows import FileRecord

RUNNING, ATTENTION, NOT_RUNNING = 0, 1, 3  # status's exit codes


@dataclass
class Failed:
    """A failed file waiting for an operator, as `status` names it (JSON key `failed`)."""

    client: str
    name: str  # CLIENT/name.json, as it came
    stage: str
    reason: str
    path: str  # the failed file, in the failed folder, as people read it (names.shown)


@dataclass
class Status:
    """One data root now: who holds it, what the service saved, today's figures, failed files, last scan and report."""

    generated: float
    running: str  # "service", "run" (a run --once), or "" when nothing holds the root
    pid: int | None
    live: Live | None  # the service's live state, when a service runs
    today: figures.Today | None  # None before anything ran here
    failed_files: int
    last_scan: dict[str, Any] | None
    last_report: dict[str, Any] | None
    instance: str = ""  # this configuration's instance
    fleet: list[Instance] = field(default_factory=list)  # a fleet's instances (none alone)
    failed: list[Failed] = field(default_factory=list)  # every failed file waiting, newest first

    def attention(self) -> list[str]:
        """What needs an operator, one line each."""
        problems = []
        live = self.live
        if live is not None:
            if self.generated - live.beat > HEARTBEAT_LIMIT:
                problems.append(f"the main loop has not turned for {self.generated - live.beat:.0f}s")
            if not live.hot_ok:
                problems.append("the hot folder is unavailable (an unmounted share?)")
            if not live.watcher_alive:
                problems.append(f"the {live.watch} watcher has stopped")
            for d in live.in_trouble:
                problems.append(f"destination in trouble: {d.error}")
        for other in self.fleet:
            if other.waiting_for_takeover and other.name != self.instance:
                problems.append(f"instance {other.line()}")
        if self.failed_files:
            n = self.failed_files
            problems.append(
                f"{count(n, 'failed file')} {plural(n, 'waits', 'wait')} for an operator (json-workflow retry)"
            )
        return problems

    @property
    def exit_code(self) -> int:
        if self.running != "service":
            return NOT_RUNNING
        return ATTENTION if self.attention() else RUNNING

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["live"] = None if self.live is None else self.live.as_dict()
        data["attention"] = self.attention()
        return data

    def lines(self, zone: ZoneInfo) -> list[str]:
        """The one screen `status` prints."""

        def when(ts: float | None) -> str:
            return "never" if ts is None else datetime.datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")

        live = self.live
        if self.running == "service" and live is not None:
            head = (
                f"Service: running (pid {self.pid}, {live.instance}) since {when(live.started)}, "
                f"watching with {live.watch}; last heartbeat {max(0.0, self.generated - live.beat):.0f}s ago"
            )
        elif self.running:
            head = f"Service: not running; a json-workflow run (pid {self.pid}) is processing the hot folder"
        else:
            head = "Service: not running"
        out = [head]
        if live is not None and self.running == "service":
            counts = f"{live.waiting} waiting, {live.claimed} claimed, {live.pending} waiting for a destination"
            out.append(f"Files: {counts}")
            for d in live.destinations:
                state = "ok" if d.state == "ok" else f"IN TROUBLE since {when(d.since)}: {d.error}"
                retry = f" (next retry {when(d.next_retry)})" if d.state != "ok" and d.next_retry else ""
                held = f"; {count(d.held, 'file')} waiting for it" if d.held else ""
                out.append(f"  {', '.join(d.rules) or '-'} -> {d.folder}: {state}{retry}{held}")
        if self.today is not None:
            t = self.today
            out.append(
                f"Today ({t.day}): {t.processed} processed, {t.archived} archived, {count(t.errors, 'error')}, "
                f"{t.success_rate:.1f}% success"
            )
            out += [f"  {c.client}: {c.processed} processed, {count(c.errors, 'error')}" for c in t.clients]
        if self.fleet:
            out.append(f"Fleet ({sum(i.alive for i in self.fleet)} of {count(len(self.fleet), 'instance')} running):")
            out += [f"  {i.line()}" for i in self.fleet]
        out.append(f"Failed files waiting: {self.failed_files}")
        out += [f"  {f.name}: {f.stage}: {f.reason}\n    -> {f.path}" for f in self.failed]
        scan = self.last_scan
        out.append(
            "Last periodic scan: "
            + ("never" if scan is None else f"{when(scan['at'])} ({scan['outcome']}, {scan.get('found')} found)")
        )
        report = self.last_report
        out.append("Last report sent: " + ("never" if report is None else f"{report['day']} at {when(report['sent'])}"))
        problems = self.attention()
        out.append("Needs attention:" if problems else "Nothing needs attention")
        out += [f"  - {p}" for p in problems]
        return out


def read_status(config: Config, now: float | None = None) -> Status:
    """The status of the configured root; a store is opened only when one exists (nothing is created)."""
    now = time.time() if now is None else now
    if config.fleet:  # who runs is the fleet's lease rows', not a lock on this host
        store = open_store(config, "status")
        try:
            return status_from(store, config, None, now)
        finally:
            store.close()
    pid = lock_holder(config)
    if not has_store(config):
        return Status(now, "run" if pid else "", pid, None, None, 0, None, None)
    store = open_store(config)
    try:
        return status_from(store, config, pid, now)
    finally:
        store.close()


def waiting_failed(store: Store, limit: int = 10_000) -> list[FileRecord]:
    """The failed files the store knows that are still in the failed folder (an operator may have moved some)."""
    return [r for r in store.failed_files(limit) if r.failed_as is not None and os.path.lexists(r.failed_as)]


def status_from(store: Store, config: Config, pid: int | None, now: float) -> Status:
    """The status from the store; `pid` holds the state folder's lock (alone; a fleet's come from its leases)."""
    today = figures.today(store, now, config.email.zone, config.highlight)
    fleet = instances(store, config, today.instances)
    if config.fleet:
        mine = next((i for i in fleet if i.name == config.instance and i.alive), None)
        pid = None if mine is None else mine.pid
    saved = {row.instance: row for row in store.live()}
    row = saved.get(config.instance) if config.fleet else next((r for r in saved.values() if r.pid == pid), None)
    live = Live.from_dict(json.loads(row.state)) if row is not None and pid is not None else None
    scan, report = last_scan_and_report(store)
    failed = [
        Failed(r.client or UNKNOWN_CLIENT, r.name, r.stage or "", r.reason or "", shown(r.failed_as or ""))
        for r in waiting_failed(store)
    ]
    return Status(
        generated=now,
        running="" if pid is None else ("service" if live is not None else "run"),
        pid=pid,
        live=live,
        today=today,
        failed_files=len(failed),
        last_scan=scan,
        last_report=report,
        instance=config.instance,
        fleet=fleet,
        failed=failed,
    )
