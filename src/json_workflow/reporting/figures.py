"""A day's figures, computed from the store's rows, for the report, the `stats` command and the stats line.

A day is a calendar day in the configured time zone, so it is 23 or 25 hours long when the clocks
change; hours are counted from local midnight in real time, and labelled with the local clock.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from json_workflow.delivery.model import Outcome
from json_workflow.intake import ScanOutcome
from json_workflow.plural import count
from json_workflow.store.rows import ClientCount, DayRows, ReceivedFile

if TYPE_CHECKING:
    from json_workflow.store import Store

# (name, claim) -> is the file still waiting in the hot folder or the claim area?
Present = Callable[[str, str | None], bool]
LAST_ERRORS = 10  # the report lists this many, newest first


@dataclass
class ClientFigures:
    client: str
    processed: int = 0
    routed: int = 0
    highlighted: int = 0  # sent by a rule whose name contains the report's highlight (Celtra)
    errors: int = 0
    categories: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Problem:
    time: str  # local HH:MM:SS
    client: str
    name: str
    reason: str


@dataclass
class DayFigures:
    day: datetime.date
    timezone: str
    generated: str  # local date and time
    uptime: str | None  # of the running service, if one is running and the day is today
    current: bool  # the day is today: "service not running" means something only then
    processed: int
    archived: int
    errors: int
    success_rate: float  # percent of processed files that were archived
    batches: int
    average_seconds: float
    average_batch: float
    scans_completed: int
    scans_skipped: int
    scans_abandoned: int
    scans_slow: int
    sources: dict[str, int]
    highlight: str
    clients: list[ClientFigures]
    destinations: list[tuple[str, int]]
    hours: list[tuple[str, int]]
    last_errors: list[Problem]
    received: int
    received_archived: int
    received_failed: int
    pending: int
    unaccounted: list[str]  # received that day, neither finished nor waiting anywhere
    instances: list[tuple[str, int, int]] = field(default_factory=list)  # a fleet's: (instance, processed, failed)
    received_superseded: int = 0  # versions written again with the same bytes while taken (the newer one counts)

    @property
    def reconciled(self) -> bool:
        return not self.unaccounted

    def as_dict(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat(), "reconciled": self.reconciled}


@dataclass
class Today:
    """The head of today's figures, as the overview and `status` show them."""

    day: str
    processed: int
    archived: int
    errors: int
    success_rate: float
    clients: list[ClientFigures]
    at: float  # when they were counted
    instances: list[tuple[str, int, int]] = field(default_factory=list)  # (instance, processed, failed)


def today(store: Store, now: float, zone: ZoneInfo, highlight: str = "") -> Today:
    day = local_day(now, zone)
    rows = store.day_summary(*day_window(day, zone), highlight)
    clients = [_client(c, highlight) for c in rows.clients]
    rate = 100.0 * rows.archived / rows.processed if rows.processed else 100.0
    instances = [(i.instance, i.processed, i.failed) for i in rows.instances]
    return Today(day.isoformat(), rows.processed, rows.archived, rows.errors, rate, clients, now, instances)


def day_window(day: datetime.date, zone: ZoneInfo) -> tuple[float, float]:
    """The UTC seconds [start, end) of a local calendar day."""
    start = datetime.datetime.combine(day, datetime.time(), zone)
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), zone)
    return start.timestamp(), end.timestamp()


def local_day(now: float, zone: ZoneInfo) -> datetime.date:
    return datetime.datetime.fromtimestamp(now, zone).date()


def duration(seconds: float) -> str:
    """ "1 day, 5 hours", "3 hours, 2 minutes", "4 minutes"."""
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [(days, "day"), (hours, "hour")] if days else [(hours, "hour"), (minutes, "minute")]
    text = ", ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n)
    return text or "under a minute"


def build(
    store: Store,
    day: datetime.date,
    zone: ZoneInfo,
    now: float,
    present: Present,
    highlight: str = "Celtra",
    by_instance: bool = False,
) -> DayFigures:
    """Every figure of one day, from the store's rows as they are now."""
    start, end = day_window(day, zone)
    rows = store.day_rows(start, end, highlight, LAST_ERRORS)
    current = day == local_day(now, zone)

    def local(ts: float, fmt: str) -> str:
        return datetime.datetime.fromtimestamp(ts, zone).strftime(fmt)

    return DayFigures(
        day=day,
        timezone=zone.key,
        generated=local(now, "%Y-%m-%d %H:%M %Z"),
        uptime=None if rows.service_started is None or not current else duration(now - rows.service_started),
        current=current,
        processed=rows.processed,
        archived=rows.archived,
        errors=rows.errors,
        success_rate=100.0 * rows.archived / rows.processed if rows.processed else 100.0,
        batches=rows.batches,
        average_seconds=rows.average_seconds,
        average_batch=rows.average_batch,
        scans_completed=rows.scans.get(ScanOutcome.COMPLETED, 0),
        scans_skipped=rows.scans.get(ScanOutcome.SKIPPED, 0),
        scans_abandoned=rows.scans.get(ScanOutcome.ABANDONED, 0),
        scans_slow=rows.scans_slow,
        sources={s.source: s.processed for s in rows.sources},
        highlight=highlight,
        clients=_clients(rows, highlight),
        destinations=rows.destinations,
        hours=_hours(rows.hours, start, end, zone),
        last_errors=[
            Problem(local(e.finished, "%H:%M:%S"), e.client or "_unknown", e.name, f"{e.stage}: {e.reason}")
            for e in rows.last_errors
        ],
        **_reconciliation(rows.received, present),
        instances=[(i.instance, i.processed, i.failed) for i in rows.instances] if by_instance else [],
    )


def stats_line(store: Store, now: float, zone: ZoneInfo) -> str:
    """The service's minutely log line: today's files by source, errors and success rate."""
    counts, errors = {}, 0
    for source, files, failed in store.by_source(*day_window(local_day(now, zone), zone)):
        counts[source.lower()], errors = files, errors + failed
    processed = sum(counts.values())
    rate = 100.0 * (processed - errors) / processed if processed else 100.0
    shown = ["startup", "realtime", "periodic"] + [s for s in ("recovery", "replay") if s in counts]
    by_source = " ".join(f"({s}: {counts.get(s, 0)})" for s in shown)
    return f"Stats: Today: {processed} processed {by_source}, {count(errors, 'error')}, {rate:.1f}% success"


def _clients(rows: DayRows, highlight: str) -> list[ClientFigures]:
    clients = {c.client: _client(c, highlight) for c in rows.clients}
    for client, category, files in rows.categories:
        clients[client].categories.append((category, files))
    return list(clients.values())


def _client(c: ClientCount, highlight: str) -> ClientFigures:
    return ClientFigures(c.client, c.processed, c.routed, c.highlighted if highlight else 0, c.errors)


def _hours(counts: dict[int, int], start: float, end: float, zone: ZoneInfo) -> list[tuple[str, int]]:
    length = round((end - start) / 3600)
    # On the days the clocks change, an hour is skipped or repeated: the zone's name tells them apart.
    fmt = "%H:%M" if length == 24 else "%H:%M %Z"
    return [
        (datetime.datetime.fromtimestamp(start + hour * 3600, zone).strftime(fmt), counts.get(hour, 0))
        for hour in range(length)
    ]


def _reconciliation(files: list[ReceivedFile], present: Present) -> dict:
    received = archived = failed = superseded = pending = 0
    unaccounted = []
    for name, claim, outcome in files:
        received += 1
        if outcome == Outcome.ARCHIVED:
            archived += 1
        elif outcome == Outcome.FAILED:
            failed += 1
        elif outcome == Outcome.SUPERSEDED:
            superseded += 1
        elif present(name, claim):
            pending += 1
        else:
            unaccounted.append(name)
    return {
        "received": received,
        "received_archived": archived,
        "received_failed": failed,
        "received_superseded": superseded,
        "pending": pending,
        "unaccounted": unaccounted,
    }
