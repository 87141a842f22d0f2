"""The store's seam: what json-workflow keeps, as named operations on plain rows (store.rows).

SQLite (store.sqlite, the embedded default) implements it today; a PostgreSQL store shared by several
hosts implements the same Protocol. Each method is one transaction. Errors are StoreError, except
that the statistics writes marked "logged" log a failure and return (they are figures, never worth
a file).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from json_workflow.store.replays import Reception, Replayed, ReplayKey
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


class Store(Protocol):
    """The journal of copies, the statistics, the reports sent and the alert state of one data root."""

    def close(self) -> None: ...

    # --- the journal: each copy recorded before it is published (see store.journal) --------------
    def record_plan(self, copies: Iterable[PlannedCopy], received: Sequence[Received] = ()) -> list[int]:
        """Record copies as planned and open the rows of the batch's files; returns their row ids, in order."""
        ...

    def fenced(self) -> bool:
        """True when another instance took over this one's claims (a fleet's; asked of the store when not known)."""
        ...

    def mark_staged(self, claims: Iterable[str]) -> None:
        """Mark the claims' copies as flushed; durable before it returns (they may be published next)."""
        ...

    def acknowledged(self, keys: Sequence[str]) -> set[str]:
        """The keys among `keys` of copies an endpoint acknowledged (store.schema's `sent`)."""
        ...

    def record_sent(self, sent: Sequence[SentCopy]) -> None:
        """Copies endpoints acknowledged, durable before it returns: a file sent again skips them."""
        ...

    def forget(self, claims: Iterable[str]) -> None:
        """Drop the copies and restart counts of claims that are finished, or handed back to wait."""
        ...

    def finish_batch(self, forget: Iterable[str], files: Sequence[FinishedFile], batch: Batch) -> None:
        """Close a batch's rows and record it, and forget an earlier batch's claims with it."""
        ...

    def finish_recovered(
        self, claim: str, outcome: str, now: float, failed_as: str | None = None, facts: FinishedFile | None = None
    ) -> None:
        """Forget a claim that recovery finished, and close its row with `outcome` (its failed file, and what
        `facts` know: the job's fields, its copies' rules and folders, or the failure's stage and reason)."""
        ...

    def restart(self, claim: str) -> None:
        """Drop a claim's copies and count that its processing begins again after a crash."""
        ...

    def restarts(self, claim: str) -> int:
        """How many times `claim` was restarted since it was last forgotten."""
        ...

    def adopt(self, claim: str, new: str) -> None:
        """A claim taken over from a dead instance was moved to `new`: its restart count and row follow it."""
        ...

    def entries(self, claim: str) -> list[Entry]:
        """The claim's copies, in the order they were planned."""
        ...

    def claims(self) -> list[str]:
        """Every claim with copies, oldest first."""
        ...

    # --- what `replay --apply` delivered (see store.replays) --------------------------------------------
    def replayed(self, source: str, digest: str) -> list[Replayed]:
        """The copies `replay --apply` made (or is making) of one version of an archived file."""
        ...

    def unfinished_replays(self) -> list[Replayed]:
        """The copies an interrupted `replay --apply` left planned or staged."""
        ...

    def write_replays(
        self,
        plan: Sequence[Replayed] = (),
        staged: Sequence[ReplayKey] = (),
        dropped: Sequence[ReplayKey] = (),
        published: Sequence[ReplayKey] = (),
        receptions: Sequence[Reception] = (),
    ) -> None:
        """One transaction, in this order: copies planned, staged, dropped, published with their files' REPLAY
        receptions; durable before it returns when anything is staged or published."""
        ...

    def last_delivery(self, names: Sequence[str], client: str) -> list[str]:
        """The folders the pipeline delivered the newest archived reception of one of `names` (of `client`) to."""
        ...

    def exclusive(self, what: str) -> bool:
        """Hold the root's lock named `what` until the store is closed; False when another process holds it."""
        ...

    # --- statistics -------------------------------------------------------------------------------
    def record_trouble(self, folder: str, error: str, now: float) -> None:
        """A destination in trouble (logged)."""
        ...

    def record_scan(
        self, outcome: str, now: float, seconds: float | None = None, found: int | None = None, slow: bool = False
    ) -> None:
        """A periodic scan: completed, skipped or abandoned (logged)."""
        ...

    def run_started(self, mode: str, now: float) -> int:
        """A new run ("service" or "once"); a run left without a stop ended then at the latest."""
        ...

    def run_stopped(self, run: int, now: float) -> None:
        """The run ended (logged)."""
        ...

    def prune(self, days: int, now: float) -> int:
        """Delete finished rows older than `days` (files in flight or waiting stay); returns file rows gone."""
        ...

    # --- reading ----------------------------------------------------------------------------------
    def day_rows(self, start: float, end: float, highlight: str, last_errors: int) -> DayRows:
        """The rows a day's figures are made of, for the window [start, end)."""
        ...

    def day_summary(self, start: float, end: float, highlight: str) -> DaySummary:
        """Files processed within [start, end): archived, failed, per client (the overview's figures)."""
        ...

    def by_source(self, start: float, end: float) -> list[SourceCount]:
        """Files processed (archived or failed) within [start, end), per source, by source."""
        ...

    def first_run(self) -> float | None:
        """When the first run still recorded started."""
        ...

    def take_send(self, what: str, lease: float) -> bool:
        """Become the one sender of `what` ("report DAY", "alert"); False while another live instance is.

        The send ends with the write that records it (mark_report_sent, save_alert_state) or release_send.
        """
        ...

    def release_send(self, what: str) -> None:
        """Give up sending `what` (it failed: another, or this one later, tries again) (logged)."""
        ...

    def reports_sent(self) -> set[str]:
        """Days (YYYY-MM-DD) whose scheduled report was sent."""
        ...

    def mark_report_sent(self, day: str, now: float, delivery: str) -> None:
        """Record the day's report as sent (durably: a restart must not send it again); a second mark is ignored."""
        ...

    def alert_state(self) -> AlertState | None:
        """What the alerts covered and when one was last mailed; None before the first round."""
        ...

    def save_alert_state(self, state: AlertState) -> None:
        """Durably, like a report marked sent."""
        ...

    def failures(self, since: float, until: float) -> list[Failure]:
        """Files failed within (since, until], oldest first."""
        ...

    def trouble_counts(self, since: float, until: float) -> list[TroubleCount]:
        """Destinations in trouble within (since, until], per folder."""
        ...

    # --- the file history, failed files, the live state ---------------------------------------------
    def history(self, text: str, limit: int = 200) -> list[FileRecord]:
        """Receptions of files whose name or job number contains `text` (any case), newest first."""
        ...

    def file_record(self, row: int) -> FileRecord | None:
        """One reception, by its row id."""
        ...

    def receptions(self, name: str) -> list[FileRecord]:
        """Every reception of the file `name` (CLIENT/name.json), newest first."""
        ...

    def failed_files(self, limit: int = 500) -> list[FileRecord]:
        """Failed files set aside and not put back since, newest first."""
        ...

    def mark_retried(self, failed: Sequence[str], now: float) -> None:
        """Note that these failed files were put back into the hot folder (logged)."""
        ...

    def copy_totals(self) -> list[tuple[str, int]]:
        """(rule, copies) over the rows kept: the copies each rule sent."""
        ...

    def outcome_totals(self) -> list[tuple[str | None, str, int]]:
        """(client, outcome, files) over the rows kept: archived, failed and pending."""
        ...

    def last_scan(self) -> LastScan | None:
        """(at, outcome, seconds, found) of the last periodic scan."""
        ...

    def last_report(self) -> SentReport | None:
        """(day, sent) of the last scheduled report sent."""
        ...

    def save_live(self, row: LiveRow) -> None:
        """A running service's live state (logged)."""
        ...

    def members(self) -> list[Member]:
        """A fleet's instances, as their lease rows say (none alone, with SQLite)."""
        ...

    def now(self) -> float:
        """The store's clock: a fleet's is the database's, which every host reads."""
        ...

    def live(self) -> list[LiveRow]:
        """The live state each service saved last, by instance."""
        ...

    def check_writable(self) -> None:
        """StoreError unless a batch could be recorded now."""
        ...
