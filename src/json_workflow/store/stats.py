"""The statistics' SQL (SQLite): one row per received file, batch, scan, destination trouble and run.

A file's row is written when it is claimed (before any copy of it exists) and completed when it is
archived, failed or left waiting, so a day's figures survive restarts and a file that is received but
never finished shows up in the report's reconciliation.
"""

from __future__ import annotations

from collections.abc import Sequence

from json_workflow.names import shown, stored
from json_workflow.store.rows import Batch, FinishedFile, LiveRow, Received
from json_workflow.store.sql import Db


def open_rows(db: Db, received: Sequence[Received], instance: str) -> list[int]:
    """Open (or reopen) the row of every claimed file; returns their ids, in order."""
    if not received:
        return []
    waiting = db.execute("SELECT 1 FROM files WHERE outcome = 'pending' LIMIT 1").fetchone() is not None
    found: list[int | None] = []  # the row each file had, if any
    for r in received:
        row = None
        if r.after_crash:  # its row was opened before the crash
            row = db.execute("SELECT id FROM files WHERE claim = ? AND outcome IS NULL", (stored(r.claim),)).fetchone()
        if row is None and waiting:  # a file that waited for its destination is the same file taken again
            row = db.execute(
                "SELECT id FROM files WHERE name = ? AND outcome = 'pending' AND inode = ?", (r.name, r.inode)
            ).fetchone()
        if row is not None:
            db.execute("UPDATE files SET claim = ?, outcome = NULL WHERE id = ?", (stored(r.claim), row[0]))
        found.append(None if row is None else row[0])
    # The new rows get their ids together, so that one executemany inserts them all.
    fresh = iter(db.new_ids(found.count(None)))
    ids = [next(fresh) if row is None else row for row in found]
    db.insert_many(
        "files",
        ("id", "received", "name", "client", "source", "claim", "instance"),
        [
            (i, r.at, r.name, r.client, r.source, stored(r.claim), instance)
            for i, r, row in zip(ids, received, found, strict=True)
            if row is None
        ],
    )
    return ids


# What closing a file's row sets (client and inode only when known now).
CLOSE = (
    "outcome = ?", "finished = ?", "seconds = ?", "client = COALESCE(?, client)", "category = ?", "studio = ?",
    "title = ?", "stage = ?", "reason = ?", "inode = COALESCE(?, inode)", "job = ?", "failed_as = ?",
)  # fmt: skip


def close_rows(db: Db, files: Sequence[FinishedFile], now: float) -> None:
    db.update_many(
        "files",
        CLOSE,
        "id",
        [
            (
                f.outcome,
                now,
                f.seconds,
                f.client,
                f.category,
                f.studio,
                f.title,
                f.stage,
                f.reason,
                f.inode,
                f.job,
                f.failed_as if f.failed_as is None else stored(f.failed_as),
                f.row,
            )
            for f in files
        ],
    )
    db.insert_many(
        "routed", ("file", "rule", "folder"), [(f.row, rule, folder) for f in files for rule, folder in f.routed]
    )


def recovered(
    db: Db, claim: str, outcome: str, now: float, failed_as: str | None, facts: FinishedFile | None = None
) -> None:
    """Close the row of a file that a crash left staged and the next start finished, with what is known of it."""
    f = facts or FinishedFile(0, outcome, 0.0)
    row = db.execute(
        "UPDATE files SET outcome = ?, finished = ?, failed_as = ?, client = COALESCE(?, client), category = ?,"
        " studio = ?, title = ?, stage = ?, reason = ?, job = ? WHERE claim = ? AND outcome IS NULL RETURNING id",
        (outcome, now, failed_as if failed_as is None else stored(failed_as), f.client, f.category, f.studio,
         f.title, f.stage, f.reason, f.job, stored(claim)),
    ).fetchone()  # fmt: skip
    if row is not None:
        db.insert_many("routed", ("file", "rule", "folder"), [(row[0], rule, folder) for rule, folder in f.routed])


def retried(db: Db, failed: list[str], now: float) -> None:
    db.executemany(
        "UPDATE files SET retried = ? WHERE failed_as = ? AND retried IS NULL", [(now, stored(f)) for f in failed]
    )


def save_live(db: Db, row: LiveRow) -> None:
    db.execute(
        "INSERT INTO live (instance, pid, started, beat, state) VALUES (?, ?, ?, ?, ?) ON CONFLICT (instance)"
        " DO UPDATE SET pid = excluded.pid, started = excluded.started, beat = excluded.beat, state = excluded.state",
        row,
    )


def batch(db: Db, b: Batch) -> None:
    db.execute("INSERT INTO batches (at, size, seconds) VALUES (?, ?, ?)", (b.at, b.size, b.seconds))


def scan(db: Db, outcome: str, now: float, seconds: float | None, found: int | None, slow: bool) -> None:
    db.execute(
        "INSERT INTO scans (at, outcome, seconds, found, slow) VALUES (?, ?, ?, ?, ?)",
        (now, outcome, seconds, found, int(slow)),
    )


def trouble(db: Db, folder: str, error: str, now: float) -> None:
    db.execute("INSERT INTO troubles (at, folder, error) VALUES (?, ?, ?)", (now, shown(folder), error))


def run_started(db: Db, mode: str, now: float, instance: str) -> int:
    db.execute(
        "UPDATE runs SET stopped = ? WHERE stopped IS NULL AND (instance = ? OR instance IS NULL)", (now, instance)
    )
    return db.execute(
        "INSERT INTO runs (started, mode, instance) VALUES (?, ?, ?) RETURNING id", (now, mode, instance)
    ).fetchone()[0]


def run_stopped(db: Db, run: int, now: float) -> None:
    db.execute("UPDATE runs SET stopped = ? WHERE id = ?", (now, run))


def prune(db: Db, days: int, now: float) -> int:
    cutoff = now - days * 86400
    done = "SELECT id FROM files WHERE received < ? AND outcome IN ('archived', 'failed', 'superseded')"
    db.execute(f"DELETE FROM routed WHERE file IN ({done})", (cutoff,))
    gone = db.execute(f"DELETE FROM files WHERE id IN ({done})", (cutoff,)).rowcount
    for table in ("batches", "scans", "troubles", "sent"):
        db.execute(f"DELETE FROM {table} WHERE at < ?", (cutoff,))
    db.execute("DELETE FROM runs WHERE stopped < ?", (cutoff,))
    return gone
