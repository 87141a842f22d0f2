"""The SQLite store, the embedded default: one file in the state folder, WAL, one connection per user.

The pipeline's threads share one store (its connection behind a lock); the reporter and the commands
open their own. Commits are not flushed one by one (synchronous=NORMAL): the operations that must survive a power
cut (copies staged before they are published; the reporter's writes, as before) ask for a flush.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from json_workflow.errors import StoreError
from json_workflow.logs import log
from json_workflow.store import journal, queries, stats
from json_workflow.store.migrate import migrate
from json_workflow.store.rows import (
    AlertState,
    Batch,
    DayRows,
    DaySummary,
    Entry,
    Failure,
    FileRecord,
    FinishedFile,
    LastScan,
    LiveRow,
    PlannedCopy,
    Received,
    SentReport,
    SourceCount,
    TroubleCount,
)
from json_workflow.store.schema import MIGRATIONS, Migration

DATABASE = "journal.sqlite3"
BUSY_TIMEOUT_MS = 10_000  # the pipeline, the reporter, the web and the commands each have a connection
CHECK_TIMEOUT_MS = 2_000


def unreadable(path: Path, error: sqlite3.Error) -> StoreError:
    """What to do about a journal that SQLite cannot read (damaged, or not a database at all)."""
    return StoreError(
        f"cannot read the journal {path}: {error}. It is damaged or not a SQLite database. Stop json-workflow, "
        f"move the file aside (sqlite3's .recover may rescue its statistics) and start again: a new journal is "
        f"made, and files left in the claim area are processed again from the start"
    )


class SqliteStore:
    """The store in `folder`/journal.sqlite3, made or upgraded to the last schema version when opened."""

    def __init__(self, folder: Path, migrations: Sequence[Migration] = MIGRATIONS):
        self.path = folder / DATABASE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # The pipeline, the reporter and the commands each have a connection; wait for each other.
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            migrate(self._db, self.path, migrations)
            self._attempted = journal.attempted(self._db)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise unreadable(self.path, e) from None
        except StoreError:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self, synchronous: str = "NORMAL", begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction; FULL flushes its commit before it returns, a deferred BEGIN only reads."""
        with self._lock, _raised_as_store_error():
            if synchronous != "NORMAL":
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(begin)
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if synchronous != "NORMAL":
                self._db.execute("PRAGMA synchronous=NORMAL")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _raised_as_store_error():
            yield self._db

    def _record(self, write: Callable[[sqlite3.Connection], object]) -> None:
        """Write statistics in a transaction of their own; a failure is logged, never raised (they are figures)."""
        try:
            with self._transaction() as db:
                write(db)
        except StoreError as e:
            log.error("Cannot write statistics to %s: %s", self.path, e)

    def _forget(self, claims: Iterable[str], also: Callable[[sqlite3.Connection], object] | None = None) -> None:
        """Drop claims' copies (and restart counts), and write `also` in the same transaction."""
        claims = list(claims)
        with self._transaction() as db:
            journal.forget(db, claims, bool(self._attempted))
            if also is not None:
                also(db)
        self._attempted.difference_update(claims)

    # --- the journal --------------------------------------------------------------------------
    def record_plan(self, copies: Iterable[PlannedCopy], received: Sequence[Received] = ()) -> list[int]:
        with self._transaction() as db:
            journal.plan(db, copies)
            return stats.open_rows(db, received)

    def mark_staged(self, claims: Iterable[str]) -> None:
        with self._transaction("FULL") as db:
            journal.mark_staged(db, claims)

    def forget(self, claims: Iterable[str]) -> None:
        self._forget(claims)

    def finish_batch(self, forget: Iterable[str], files: Sequence[FinishedFile], batch: Batch) -> None:
        def close(db: sqlite3.Connection) -> None:
            stats.close_rows(db, files, batch.at)
            stats.batch(db, batch)

        self._forget(forget, close)

    def finish_recovered(self, claim: str, outcome: str, now: float, failed_as: str | None = None) -> None:
        self._forget([claim], lambda db: stats.recovered(db, claim, outcome, now, failed_as))

    def restart(self, claim: str) -> None:
        self._attempted.add(claim)
        with self._transaction() as db:
            journal.restart(db, claim)

    def restarts(self, claim: str) -> int:
        if claim not in self._attempted:
            return 0
        with self._reading() as db:
            return journal.restarts(db, claim)

    def entries(self, claim: str) -> list[Entry]:
        with self._reading() as db:
            return journal.entries(db, claim)

    def claims(self) -> list[str]:
        with self._reading() as db:
            return journal.claims(db)

    # --- statistics ---------------------------------------------------------------------------
    def record_trouble(self, folder: str, error: str, now: float) -> None:
        self._record(lambda db: stats.trouble(db, folder, error, now))

    def record_scan(
        self, outcome: str, now: float, seconds: float | None = None, found: int | None = None, slow: bool = False
    ) -> None:
        self._record(lambda db: stats.scan(db, outcome, now, seconds, found, slow))

    def run_started(self, mode: str, now: float) -> int:
        with self._transaction() as db:
            return stats.run_started(db, mode, now)

    def run_stopped(self, run: int, now: float) -> None:
        self._record(lambda db: stats.run_stopped(db, run, now))

    def prune(self, days: int, now: float) -> int:
        with self._transaction("FULL") as db:
            return stats.prune(db, days, now)

    # --- reading ------------------------------------------------------------------------------
    def day_rows(self, start: float, end: float, highlight: str, last_errors: int) -> DayRows:
        with self._transaction(begin="BEGIN") as db:  # one snapshot, so that the figures add up
            return queries.day_rows(db, start, end, highlight, last_errors)

    def day_summary(self, start: float, end: float, highlight: str) -> DaySummary:
        with self._transaction(begin="BEGIN") as db:
            return queries.day_summary(db, start, end, highlight)

    def by_source(self, start: float, end: float) -> list[SourceCount]:
        with self._reading() as db:
            return queries.by_source(db, start, end)

    def first_run(self) -> float | None:
        with self._reading() as db:
            return queries.first_run(db)

    def reports_sent(self) -> set[str]:
        with self._reading() as db:
            return queries.reports_sent(db)

    def mark_report_sent(self, day: str, now: float, delivery: str) -> None:
        with self._transaction("FULL") as db:
            queries.mark_report_sent(db, day, now, delivery)

    def alert_state(self) -> AlertState | None:
        with self._reading() as db:
            return queries.alert_state(db)

    def save_alert_state(self, state: AlertState) -> None:
        with self._transaction("FULL") as db:
            queries.save_alert_state(db, state)

    def failures(self, since: float, until: float) -> list[Failure]:
        with self._reading() as db:
            return queries.failures(db, since, until)

    def trouble_counts(self, since: float, until: float) -> list[TroubleCount]:
        with self._reading() as db:
            return queries.trouble_counts(db, since, until)

    # --- the file history, failed files, the live state ---------------------------------------
    def history(self, text: str, limit: int = 200) -> list[FileRecord]:
        with self._reading() as db:
            return queries.history(db, text, limit)

    def file_record(self, row: int) -> FileRecord | None:
        with self._reading() as db:
            return queries.file_record(db, row)

    def receptions(self, name: str) -> list[FileRecord]:
        with self._reading() as db:
            return queries.receptions(db, name)

    def failed_files(self, limit: int = 500) -> list[FileRecord]:
        with self._reading() as db:
            return queries.failed_files(db, limit)

    def mark_retried(self, failed: Sequence[str], now: float) -> None:
        self._record(lambda db: stats.retried(db, list(failed), now))

    def outcome_totals(self) -> list[tuple[str | None, str, int]]:
        with self._reading() as db:
            return queries.outcome_totals(db)

    def last_scan(self) -> LastScan | None:
        with self._reading() as db:
            return queries.last_scan(db)

    def last_report(self) -> SentReport | None:
        with self._reading() as db:
            return queries.last_report(db)

    def save_live(self, row: LiveRow) -> None:
        self._record(lambda db: stats.save_live(db, row))

    def live(self) -> list[LiveRow]:
        with self._reading() as db:
            return queries.live(db)

    def check_writable(self) -> None:
        # The write lock taken and given back: what a batch needs first, without writing anything. A
        # health check answers within seconds: a lock held longer than that is trouble worth reporting.
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout={CHECK_TIMEOUT_MS}")
        try:
            with self._transaction():
                pass
        finally:
            with self._lock:
                self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


@contextlib.contextmanager
def _raised_as_store_error() -> Iterator[None]:
    """SQLite's errors leave the store as StoreError, with SQLite's words."""
    try:
        yield
    except sqlite3.Error as e:
        raise StoreError(str(e)) from e
