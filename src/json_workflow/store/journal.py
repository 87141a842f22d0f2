"""The journal: a small SQLite database recording every copy before it is published.

It is what makes a crash harmless. Each copy's hidden temporary is recorded as *planned* before it is
written and as *staged* once it is flushed; only then is it renamed into place. After a crash, for a
claimed file still in the claim area:

- a planned copy's temporary may be partial: it is removed and the copy made again;
- a staged copy whose temporary still exists was not published: it is renamed into place now;
- a staged copy whose temporary is gone was published (a downstream tool may already have taken it):
  it is not delivered again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from json_workflow.errors import StoreError
from json_workflow.logs import log
from json_workflow.names import from_store, stored
from json_workflow.store import stats

DATABASE = "journal.sqlite3"

_SCHEMA = [
    # How often a claim's processing began after a crash: a file that stops the process each time is set aside.
    "CREATE TABLE IF NOT EXISTS attempts (claim TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS copies (
        claim TEXT NOT NULL,      -- the claimed file, in the claim area
        temp TEXT NOT NULL,       -- the hidden temporary, in the destination folder (a move: the claim)
        final TEXT NOT NULL,      -- where it is published (for a failed file: its folder)
        kind TEXT NOT NULL,       -- 'copy', 'failed', 'reason' or 'move'
        state TEXT NOT NULL DEFAULT 'planned',
        PRIMARY KEY (claim, temp)
    )""",
]


T = TypeVar("T")
# Writes more rows (statistics) in the same transaction as the journal's own.
Record = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True, slots=True)
class Entry:
    claim: str
    temp: str
    final: str
    kind: str
    state: str


def unreadable(path: Path, error: sqlite3.Error) -> StoreError:
    """What to do about a journal that SQLite cannot read (damaged, or not a database at all)."""
    return StoreError(
        f"cannot read the journal {path}: {error}. It is damaged or not a SQLite database. Stop json-workflow, "
        f"move the file aside (sqlite3's .recover may rescue its statistics) and start again: a new journal is "
        f"made, and files left in the claim area are processed again from the start"
    )


class Journal:
    """One SQLite connection shared by the pipeline's threads, behind a lock."""

    def __init__(self, folder: Path):
        self.path = folder / DATABASE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: commits are not flushed one by one; staged() asks for a flush when order matters.
            self._db.execute("PRAGMA synchronous=NORMAL")
            # The service's reporter reads and writes through its own connection; wait for each other.
            self._db.execute("PRAGMA busy_timeout=10000")
            for statement in _SCHEMA + stats.SCHEMA:
                self._db.execute(statement)
            self._attempted = {from_store(row[0]) for row in self._db.execute("SELECT claim FROM attempts")}
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise unreadable(self.path, e) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self, synchronous: str = "NORMAL") -> Iterator[sqlite3.Connection]:
        with self._lock:
            if synchronous != "NORMAL":
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if synchronous != "NORMAL":
                self._db.execute("PRAGMA synchronous=NORMAL")

    def plan(self, entries: Iterable[tuple[str, str, str, str]], also: Record | None = None) -> None:
        """Record (claim, temp, final, kind) before the temporaries are written (and `also`, at once)."""
        # Bytes that are not UTF-8 can only come from the file's name and client folder, which the claim's
        # path holds too: when it is plain ASCII, so are they, and the configured folders are text.
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO copies (claim, temp, final, kind) VALUES (?, ?, ?, ?)",
                (
                    row if row[0].isascii() else (stored(row[0]), stored(row[1]), stored(row[2]), row[3])
                    for row in entries
                ),
            )
            if also:
                also(db)

    def staged(self, claims: Iterable[str]) -> None:
        """Mark the claims' temporaries as flushed; durable before any of them is renamed into place."""
        with self.transaction("FULL") as db:
            db.executemany("UPDATE copies SET state = 'staged' WHERE claim = ?", ((stored(c),) for c in claims))

    def forget(self, claims: Iterable[str], also: Record | None = None) -> None:
        """Drop the entries of claims that are finished (or handed back), and record `also` with it."""
        claims = list(claims)
        with self.transaction() as db:
            db.executemany("DELETE FROM copies WHERE claim = ?", ((stored(c),) for c in claims))
            if self._attempted:
                db.executemany("DELETE FROM attempts WHERE claim = ?", ((stored(c),) for c in claims))
            if also:
                also(db)
        self._attempted.difference_update(claims)

    def query(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run `read` on the connection, between the pipeline's writes."""
        with self._lock:
            return read(self._db)

    def record(self, also: Record) -> None:
        """Write statistics in a transaction of their own; a failure is logged, never raised (they are figures)."""
        try:
            with self.transaction() as db:
                also(db)
        except sqlite3.Error as e:
            log.error("Cannot write statistics to %s: %s", self.path, e)

    def restarts(self, claim: str) -> int:
        """How many times `claim` was restarted (see `restart`)."""
        if claim not in self._attempted:
            return 0
        return self.query(
            lambda db: db.execute("SELECT count FROM attempts WHERE claim = ?", (stored(claim),)).fetchone()[0]
        )

    def restart(self, claim: str) -> None:
        """Drop a claim's copies and count that its processing begins again after a crash; the count is kept
        until the claim is forgotten, so a file that stops the process every time it is processed shows."""
        self._attempted.add(claim)
        with self.transaction() as db:
            db.execute("DELETE FROM copies WHERE claim = ?", (stored(claim),))
            db.execute(
                "INSERT INTO attempts (claim, count) VALUES (?, 1) ON CONFLICT (claim) DO UPDATE SET count = count + 1",
                (stored(claim),),
            )

    def entries(self, claim: str) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT claim, temp, final, kind, state FROM copies WHERE claim = ? ORDER BY rowid", (stored(claim),)
            ).fetchall()
        return [Entry(from_store(c), from_store(t), from_store(f), kind, state) for c, t, f, kind, state in rows]

    def claims(self) -> list[str]:
        """Every claim with entries, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT claim FROM copies GROUP BY claim ORDER BY MIN(rowid)").fetchall()
        return [from_store(row[0]) for row in rows]
