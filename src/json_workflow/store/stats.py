"""Statistics: one row per received file, batch, scan and destination trouble, in the journal's database.

A file's row is written when it is claimed (before any copy of it exists) and completed when it is
archived, failed or left waiting, so a day's figures survive restarts and a file that is received but
never finished shows up in the report's reconciliation. Times are UTC seconds since the epoch.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from json_workflow.delivery.model import Outcome
from json_workflow.intake import Source
from json_workflow.names import shown, stored

if TYPE_CHECKING:
    from json_workflow.delivery.model import Delivery

# The outcomes a file's row is closed with; a file left claimed or vanished keeps its row open.
RECORDED = (Outcome.ARCHIVED, Outcome.FAILED, Outcome.PENDING)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY,
        received REAL NOT NULL,   -- when it was claimed
        name TEXT NOT NULL,       -- CLIENT/name.json, as the log shows it
        client TEXT,              -- its client folder or ClientCode; NULL when unknown
        source TEXT NOT NULL,     -- STARTUP, REALTIME, PERIODIC, RECOVERY
        inode INTEGER,            -- with name, recognises a waiting file when it is taken again
        claim TEXT,               -- its path in the claim area
        outcome TEXT,             -- NULL while in flight, then archived, failed or pending
        finished REAL,
        seconds REAL,             -- processing time, claim to finish
        category TEXT, studio TEXT, title TEXT,
        stage TEXT, reason TEXT   -- for failed (and pending) files
    )""",
    "CREATE INDEX IF NOT EXISTS files_received ON files (received)",
    "CREATE INDEX IF NOT EXISTS files_finished ON files (finished)",
    "CREATE INDEX IF NOT EXISTS files_open ON files (claim) WHERE outcome IS NULL",
    "CREATE INDEX IF NOT EXISTS files_waiting ON files (name) WHERE outcome = 'pending'",
    """CREATE TABLE IF NOT EXISTS routed (
        file INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        rule TEXT NOT NULL,
        folder TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS routed_file ON routed (file)",
    "CREATE TABLE IF NOT EXISTS batches (at REAL NOT NULL, size INTEGER NOT NULL, seconds REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS scans (
        at REAL NOT NULL,
        outcome TEXT NOT NULL,    -- completed, skipped, abandoned
        seconds REAL, found INTEGER, slow INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE TABLE IF NOT EXISTS troubles (at REAL NOT NULL, folder TEXT NOT NULL, error TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, stopped REAL, mode TEXT)",
    "CREATE TABLE IF NOT EXISTS reports (day TEXT PRIMARY KEY, sent REAL NOT NULL, delivery TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value)",
]


def received(db: sqlite3.Connection, deliveries: Iterable[Delivery], now: float) -> None:
    """Open (or reopen) the row of every claimed file; sets each delivery's `row`."""
    waiting = db.execute("SELECT 1 FROM files WHERE outcome = 'pending' LIMIT 1").fetchone() is not None
    # New rows get their ids here so that one executemany inserts them all (we hold the write lock).
    next_id, new = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM files").fetchone()[0], []
    for d in deliveries:
        c = d.candidate
        row = None
        if d.source == Source.RECOVERY:  # its row was opened before the crash
            row = db.execute("SELECT id FROM files WHERE claim = ? AND outcome IS NULL", (stored(c.path),)).fetchone()
        if row is None and waiting:  # a file that waited for its destination is the same file taken again
            row = db.execute(
                "SELECT id FROM files WHERE name = ? AND outcome = 'pending' AND inode = ?", (c.display, _inode(c.path))
            ).fetchone()
        if row is not None:
            db.execute("UPDATE files SET claim = ?, outcome = NULL WHERE id = ?", (stored(c.path), row[0]))
            d.row = row[0]
        else:
            d.row, next_id = next_id, next_id + 1
            new.append((d.row, now, c.display, c.folder and shown(c.folder), d.source, stored(c.path)))
    db.executemany("INSERT INTO files (id, received, name, client, source, claim) VALUES (?, ?, ?, ?, ?, ?)", new)


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def finished(db: sqlite3.Connection, deliveries: Iterable[Delivery], now: float) -> None:
    """Close the rows of files that are archived, failed or waiting again (not those left claimed)."""
    rows, routed = [], []
    for d in deliveries:
        outcome, job, rejection, inode = d.outcome, d.job, d.rejection, None
        if d.row is None or outcome not in RECORDED:  # a vanished file stays open: unaccounted for
            continue
        if outcome == Outcome.PENDING:  # handed back to the hot folder: same inode there
            stage, reason, inode = "deliver", str(d.waiting_on), _inode(d.candidate.origin)
        elif rejection is not None:
            stage, reason = rejection.stage, rejection.reason
        else:
            stage, reason = None, None
            routed += [
                (d.row, rule, str(dest.folder))
                for dest in d.destinations
                if not dest.is_archive
                for rule in dest.reasons
            ]
        rows.append(
            (
                outcome,
                now,
                d.seconds,
                job.client if job else None,
                job.category if job else None,
                job.studio if job else None,
                job.title if job else None,
                stage,
                reason,
                inode,
                d.row,
            )
        )
    db.executemany(
        "UPDATE files SET outcome = ?, finished = ?, seconds = ?, client = COALESCE(?, client), category = ?,"
        " studio = ?, title = ?, stage = ?, reason = ?, inode = COALESCE(?, inode) WHERE id = ?",
        rows,
    )
    db.executemany("INSERT INTO routed (file, rule, folder) VALUES (?, ?, ?)", routed)


def recovered(db: sqlite3.Connection, claim: str, outcome: str, now: float) -> None:
    """Close the row of a file that a crash left staged and the next start finished."""
    db.execute(
        "UPDATE files SET outcome = ?, finished = ? WHERE claim = ? AND outcome IS NULL", (outcome, now, stored(claim))
    )


def batch(db: sqlite3.Connection, size: int, seconds: float, now: float) -> None:
    db.execute("INSERT INTO batches (at, size, seconds) VALUES (?, ?, ?)", (now, size, seconds))


def scan(
    db: sqlite3.Connection,
    outcome: str,
    now: float,
    seconds: float | None = None,
    found: int | None = None,
    slow: bool = False,
) -> None:
    db.execute(
        "INSERT INTO scans (at, outcome, seconds, found, slow) VALUES (?, ?, ?, ?, ?)",
        (now, outcome, seconds, found, int(slow)),
    )


def trouble(db: sqlite3.Connection, folder: str, error: str, now: float) -> None:
    db.execute("INSERT INTO troubles (at, folder, error) VALUES (?, ?, ?)", (now, shown(folder), error))


def run_started(db: sqlite3.Connection, mode: str, now: float) -> int:
    """A new run (service or --once); a run left without a stop ended in a crash, at the latest now."""
    db.execute("UPDATE runs SET stopped = ? WHERE stopped IS NULL", (now,))
    row = db.execute("INSERT INTO runs (started, mode) VALUES (?, ?)", (now, mode)).lastrowid
    assert row is not None  # an INSERT always has one
    return row


def run_stopped(db: sqlite3.Connection, run: int, now: float) -> None:
    db.execute("UPDATE runs SET stopped = ? WHERE id = ?", (now, run))


def prune(db: sqlite3.Connection, days: int, now: float) -> int:
    """Delete finished rows older than `days` (files still in flight or waiting stay); returns file rows gone."""
    cutoff = now - days * 86400
    done = "SELECT id FROM files WHERE received < ? AND outcome IN ('archived', 'failed')"
    db.execute(f"DELETE FROM routed WHERE file IN ({done})", (cutoff,))
    gone = db.execute(f"DELETE FROM files WHERE id IN ({done})", (cutoff,)).rowcount
    for table in ("batches", "scans", "troubles"):
        db.execute(f"DELETE FROM {table} WHERE at < ?", (cutoff,))  # noqa: S608 (fixed names)
    db.execute("DELETE FROM runs WHERE stopped < ?", (cutoff,))
    return gone
