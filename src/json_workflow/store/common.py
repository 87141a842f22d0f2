"""The store's operations, written once over a connection (store.sql.Db) and a transaction each.

SQLite (store.sqlite) and PostgreSQL (store.postgres) give the connection, the transactions and their
durability; PostgreSQL also keeps paths relative to the data root (`_kept`, `_path`), since each host
of a fleet may mount the share elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from json_workflow.errors import StoreError
from json_workflow.logs import log
from json_workflow.store import journal, queries, stats
from json_workflow.store.replays import ReplayStore
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
    Member,
    PlannedCopy,
    Received,
    SentCopy,
    SentReport,
    SourceCount,
    TroubleCount,
)
from json_workflow.store.sql import Db


class SqlStore(ReplayStore):
    """The Store protocol (store.api) over StoreBase's transactions, given by a subclass; replay's in ReplayStore."""

    _attempted: set[str]  # claims with a restart count (SQLite knows them all; a fleet's may be anyone's)

    # --- helpers ----------------------------------------------------------------------------------
    def _record(self, write: Callable[[Db], object]) -> None:
        """Write statistics in a transaction of their own; a failure is logged, never raised (they are figures)."""
        try:
            with self._transaction() as db:
                write(db)
        except StoreError as e:
            if not self.fenced():  # taken over (asked now: it may have just woken): its sessions were ended on purpose
                log.error("Cannot write statistics to %s: %s", self.where, e)

    def _forget(self, claims: Iterable[str], also: Callable[[Db], object] | None = None) -> None:
        """Drop claims' copies (and restart counts), and write `also` in the same transaction."""
        claims = list(claims)
        with self._transaction() as db:
            journal.forget(db, [self._kept(c) for c in claims], bool(self._attempted))
            if also is not None:
                also(db)
        self._attempted.difference_update(claims)

    def _records(self, records: list[FileRecord]) -> list[FileRecord]:
        if not self.maps_paths:
            return records
        path = self._path
        return [
            r._replace(
                failed_as=None if r.failed_as is None else path(r.failed_as),
                routed=[(rule, path(folder)) for rule, folder in r.routed],
            )
            for r in records
        ]

    # --- the journal ------------------------------------------------------------------------------
    def record_plan(self, copies: Iterable[PlannedCopy], received: Sequence[Received] = ()) -> list[int]:
        if self.maps_paths:
            kept = self._kept
            copies = [
                (kept(claim), temp, final, kind) if kind == "send" else (kept(claim), kept(temp), kept(final), kind)
                for claim, temp, final, kind in copies
            ]
            received = [r._replace(claim=kept(r.claim)) for r in received]
        with self._transaction() as db:
            self._fenced(db)
            journal.plan(db, copies)
            return stats.open_rows(db, received, self.instance)

    def mark_staged(self, claims: Iterable[str]) -> None:
        with self._transaction(durable=True) as db:
            self._fenced(db)
            journal.mark_staged(db, [self._kept(c) for c in claims])

    def acknowledged(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        with self._reading() as db:
            marks = ", ".join("?" * len(keys))
            return {row[0] for row in db.execute(f"SELECT key FROM sent WHERE key IN ({marks})", tuple(keys))}

    def record_sent(self, sent: Sequence[SentCopy]) -> None:
        # Not fenced: an acknowledgement is a fact, and a taker that sends the file again skips it. Not flushed
        # either: a kill -9 keeps it; a power cut may lose it, and the copy goes again with the same key.
        with self._transaction() as db:
            db.insert_many("sent", SentCopy._fields, list(sent), " ON CONFLICT (key) DO NOTHING")

    def forget(self, claims: Iterable[str]) -> None:
        self._forget(claims)

    def finish_batch(self, forget: Iterable[str], files: Sequence[FinishedFile], batch: Batch) -> None:
        if self.maps_paths:
            kept = self._kept
            files = [
                f._replace(
                    failed_as=None if f.failed_as is None else kept(f.failed_as),
                    routed=[(rule, kept(folder)) for rule, folder in f.routed],
                )
                for f in files
            ]

        def close(db: Db) -> None:
            self._fenced(db)  # a taken-over instance's rows are the taker's now
            stats.close_rows(db, files, batch.at)
            stats.batch(db, batch)

        self._forget(forget, close)

    def finish_recovered(
        self, claim: str, outcome: str, now: float, failed_as: str | None = None, facts: FinishedFile | None = None
    ) -> None:
        kept = None if failed_as is None else self._kept(failed_as)
        if facts is not None and self.maps_paths:
            facts = facts._replace(routed=[(rule, self._kept(folder)) for rule, folder in facts.routed])
        self._forget([claim], lambda db: stats.recovered(db, self._kept(claim), outcome, now, kept, facts))

    def restart(self, claim: str) -> None:
        self._attempted.add(claim)
        with self._transaction() as db:
            journal.restart(db, self._kept(claim))

    def restarts(self, claim: str) -> int:
        if claim not in self._attempted:
            return 0
        with self._reading() as db:
            return journal.restarts(db, self._kept(claim))

    def adopt(self, claim: str, new: str) -> None:
        self._attempted.add(new)
        with self._transaction() as db:
            journal.adopt(db, self._kept(claim), self._kept(new))

    def entries(self, claim: str) -> list[Entry]:
        with self._reading() as db:
            found = journal.entries(db, self._kept(claim))
        path = self._path
        return [
            Entry(path(e.claim), e.temp, e.final, e.kind, e.state)
            if e.kind == "send"  # its key and its URL: no paths
            else Entry(path(e.claim), path(e.temp), path(e.final), e.kind, e.state)
            for e in found
        ]

    def claims(self) -> list[str]:
        with self._reading() as db:
            return [self._path(c) for c in journal.claims(db)]

    # --- statistics -------------------------------------------------------------------------------
    def record_trouble(self, folder: str, error: str, now: float) -> None:
        self._record(lambda db: stats.trouble(db, self._kept(folder), error, now))

    def record_scan(
        self, outcome: str, now: float, seconds: float | None = None, found: int | None = None, slow: bool = False
    ) -> None:
        self._record(lambda db: stats.scan(db, outcome, now, seconds, found, slow))

    def run_started(self, mode: str, now: float) -> int:
        with self._transaction() as db:
            return stats.run_started(db, mode, now, self.instance)

    def run_stopped(self, run: int, now: float) -> None:
        self._record(lambda db: stats.run_stopped(db, run, now))

    def prune(self, days: int, now: float) -> int:
        with self._transaction(durable=True) as db:
            return stats.prune(db, days, now)

    # --- reading ----------------------------------------------------------------------------------
    def day_rows(self, start: float, end: float, highlight: str, last_errors: int) -> DayRows:
        with self._transaction(snapshot=True) as db:  # one snapshot, so that the figures add up
            rows = queries.day_rows(db, start, end, highlight, last_errors)
        if not self.maps_paths:
            return rows
        path = self._path
        return rows._replace(
            received=[r if r.claim is None else r._replace(claim=path(r.claim)) for r in rows.received],
            destinations=[(path(folder), files) for folder, files in rows.destinations],
        )

    def day_summary(self, start: float, end: float, highlight: str) -> DaySummary:
        with self._transaction(snapshot=True) as db:
            return queries.day_summary(db, start, end, highlight)

    def by_source(self, start: float, end: float) -> list[SourceCount]:
        with self._reading() as db:
            return queries.by_source(db, start, end)

    def first_run(self) -> float | None:
        with self._reading() as db:
            return queries.first_run(db)

    def now(self) -> float:
        """The store's clock (a fleet's: the database's, which every host reads)."""
        return time.time()

    def take_send(self, what: str, lease: float) -> bool:
        now = self.now()
        with self._transaction() as db:
            return queries.take_send(db, what, self.instance, now, lease)

    def release_send(self, what: str) -> None:
        self._record(lambda db: queries.release_send(db, what, self.instance))

    def reports_sent(self) -> set[str]:
        with self._reading() as db:
            return queries.reports_sent(db)

    def mark_report_sent(self, day: str, now: float, delivery: str) -> None:
        with self._transaction(durable=True) as db:
            queries.mark_report_sent(db, day, now, delivery)

    def alert_state(self) -> AlertState | None:
        with self._reading() as db:
            return queries.alert_state(db)

    def save_alert_state(self, state: AlertState) -> None:
        with self._transaction(durable=True) as db:
            queries.save_alert_state(db, state)

    def failures(self, since: float, until: float) -> list[Failure]:
        with self._reading() as db:
            return queries.failures(db, since, until)

    def trouble_counts(self, since: float, until: float) -> list[TroubleCount]:
        with self._reading() as db:
            counts = queries.trouble_counts(db, since, until)
        return [c._replace(folder=self._path(c.folder)) for c in counts] if self.maps_paths else counts

    # --- the file history, failed files, the live state -----------------------------------------
    def history(self, text: str, limit: int = 200) -> list[FileRecord]:
        with self._reading() as db:
            return self._records(queries.history(db, text, limit))

    def file_record(self, row: int) -> FileRecord | None:
        with self._reading() as db:
            found = queries.file_record(db, row)
        return None if found is None else self._records([found])[0]

    def receptions(self, name: str) -> list[FileRecord]:
        with self._reading() as db:
            return self._records(queries.receptions(db, name))

    def failed_files(self, limit: int = 500) -> list[FileRecord]:
        with self._reading() as db:
            return self._records(queries.failed_files(db, limit))

    def mark_retried(self, failed: Sequence[str], now: float) -> None:
        kept = [self._kept(f) for f in failed]
        self._record(lambda db: stats.retried(db, kept, now))

    def copy_totals(self) -> list[tuple[str, int]]:
        with self._reading() as db:
            return queries.copy_totals(db)

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

    def members(self) -> list[Member]:
        with self._reading() as db:
            return queries.members(db)

    def live(self) -> list[LiveRow]:
        with self._reading() as db:
            return queries.live(db)
