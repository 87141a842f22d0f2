"""A day's figures: queries over the statistics rows, for the report, the `stats` command and alerts.

A day is a calendar day in the configured time zone, so it is 23 or 25 hours long when the clocks
change; hours are counted from local midnight in real time, and labelled with the local clock.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from zoneinfo import ZoneInfo

# (name, claim) -> is the file still waiting in the hot folder or the claim area?
Present = Callable[[str, str | None], bool]
# Files processed (archived or failed) within a window; the two parameters are its start and end.
DONE = "finished >= ? AND finished < ? AND outcome IN ('archived', 'failed')"


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
    uptime: str | None  # of the running service, if one is running
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

    @property
    def reconciled(self) -> bool:
        return not self.unaccounted

    def as_dict(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat(), "reconciled": self.reconciled}


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
    db: sqlite3.Connection, day: datetime.date, zone: ZoneInfo, now: float, present: Present, highlight: str = "Celtra"
) -> DayFigures:
    """Every figure of one day, from the rows as they are now."""
    start, end = day_window(day, zone)
    window = (start, end)
    processed, archived, errors, average = db.execute(
        f"SELECT COUNT(*), COALESCE(SUM(outcome = 'archived'), 0), COALESCE(SUM(outcome = 'failed'), 0),"
        f" COALESCE(AVG(seconds), 0) FROM files WHERE {DONE}",
        window,
    ).fetchone()
    sources = {source: count for source, count, _ in _by_source(db, window)}
    batches, average_batch = db.execute(
        "SELECT COUNT(*), COALESCE(AVG(size), 0) FROM batches WHERE at >= ? AND at < ?", window
    ).fetchone()
    scans = dict(
        db.execute("SELECT outcome, COUNT(*) FROM scans WHERE at >= ? AND at < ? GROUP BY outcome", window).fetchall()
    )
    slow = db.execute("SELECT COUNT(*) FROM scans WHERE at >= ? AND at < ? AND slow", window).fetchone()[0]

    def local(ts: float, fmt: str) -> str:
        return datetime.datetime.fromtimestamp(ts, zone).strftime(fmt)

    return DayFigures(
        day=day,
        timezone=zone.key,
        generated=local(now, "%Y-%m-%d %H:%M %Z"),
        uptime=_uptime(db, now),
        processed=processed,
        archived=archived,
        errors=errors,
        success_rate=100.0 * archived / processed if processed else 100.0,
        batches=batches,
        average_seconds=average,
        average_batch=average_batch,
        scans_completed=scans.get("completed", 0),
        scans_skipped=scans.get("skipped", 0),
        scans_abandoned=scans.get("abandoned", 0),
        scans_slow=slow,
        sources=sources,
        highlight=highlight,
        clients=_clients(db, window, highlight),
        destinations=db.execute(
            f"SELECT folder, COUNT(DISTINCT file) AS n FROM routed JOIN files ON files.id = routed.file"
            f" WHERE {DONE} GROUP BY folder ORDER BY n DESC, folder",
            window,
        ).fetchall(),
        hours=_hours(db, start, end, zone),
        last_errors=[
            Problem(local(ts, "%H:%M:%S"), client or "_unknown", name, f"{stage}: {reason}")
            for ts, client, name, stage, reason in db.execute(
                "SELECT finished, client, name, stage, reason FROM files WHERE outcome = 'failed'"
                " AND finished >= ? AND finished < ? ORDER BY finished DESC, id DESC LIMIT 10",
                window,
            )
        ],
        **_reconciliation(db, window, present),
    )


def stats_line(db: sqlite3.Connection, now: float, zone: ZoneInfo) -> str:
    """The service's minutely log line: today's files by source, errors and success rate."""
    window = day_window(local_day(now, zone), zone)
    counts, errors = {}, 0
    for source, count, failed in _by_source(db, window):
        counts[source.lower()], errors = count, errors + failed
    processed = sum(counts.values())
    rate = 100.0 * (processed - errors) / processed if processed else 100.0
    shown = ["startup", "realtime", "periodic"] + ["recovery"] * ("recovery" in counts)
    by_source = " ".join(f"({s}: {counts.get(s, 0)})" for s in shown)
    return f"Stats: Today: {processed} processed {by_source}, {errors} errors, {rate:.1f}% success"


def _by_source(db: sqlite3.Connection, window: tuple[float, float]) -> list[tuple[str, int, int]]:
    """(source, files processed, of which failed) within the window."""
    return db.execute(
        f"SELECT source, COUNT(*), SUM(outcome = 'failed') FROM files WHERE {DONE} GROUP BY source ORDER BY source",
        window,
    ).fetchall()


def _uptime(db: sqlite3.Connection, now: float) -> str | None:
    row = db.execute(
        "SELECT started FROM runs WHERE mode = 'service' AND stopped IS NULL ORDER BY started DESC LIMIT 1"
    ).fetchone()
    return duration(now - row[0]) if row else None


def _clients(db: sqlite3.Connection, window: tuple[float, float], highlight: str) -> list[ClientFigures]:
    clients: dict[str, ClientFigures] = {}
    rows = db.execute(
        "SELECT COALESCE(f.client, '_unknown') AS c, COUNT(*), SUM(f.outcome = 'failed'),"
        " SUM(EXISTS (SELECT 1 FROM routed r WHERE r.file = f.id)),"
        " SUM(EXISTS (SELECT 1 FROM routed r WHERE r.file = f.id AND instr(lower(r.rule), lower(?)) > 0))"
        f" FROM files f WHERE {DONE} GROUP BY c ORDER BY COUNT(*) DESC, c",
        (highlight or "\0", *window),
    )
    for client, processed, errors, routed, highlighted in rows:
        clients[client] = ClientFigures(client, processed, routed, highlighted if highlight else 0, errors)
    for client, category, count in db.execute(
        "SELECT COALESCE(f.client, '_unknown'), f.category, COUNT(*)"
        f" FROM files f WHERE {DONE} AND f.category IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
        window,
    ):
        clients[client].categories.append((category, count))
    return list(clients.values())


def _hours(db: sqlite3.Connection, start: float, end: float, zone: ZoneInfo) -> list[tuple[str, int]]:
    counts = dict(
        db.execute(
            f"SELECT CAST((finished - ?) / 3600 AS INTEGER), COUNT(*) FROM files WHERE {DONE} GROUP BY 1",
            (start, start, end),
        ).fetchall()
    )
    length = round((end - start) / 3600)
    # On the days the clocks change, an hour is skipped or repeated: the zone's name tells them apart.
    fmt = "%H:%M" if length == 24 else "%H:%M %Z"
    return [
        (datetime.datetime.fromtimestamp(start + hour * 3600, zone).strftime(fmt), counts.get(hour, 0))
        for hour in range(length)
    ]


def _reconciliation(db: sqlite3.Connection, window: tuple[float, float], present: Present) -> dict:
    received = archived = failed = pending = 0
    unaccounted = []
    for name, claim, outcome in db.execute(
        "SELECT name, claim, outcome FROM files WHERE received >= ? AND received < ? ORDER BY received", window
    ):
        received += 1
        if outcome == "archived":
            archived += 1
        elif outcome == "failed":
            failed += 1
        elif present(name, claim):
            pending += 1
        else:
            unaccounted.append(name)
    return {
        "received": received,
        "received_archived": archived,
        "received_failed": failed,
        "pending": pending,
        "unaccounted": unaccounted,
    }
