"""Finishing a batch once its renames are durable: each file released, handed back or set aside, counted, logged.

A file that waits goes back to the hot folder, unless a newer file of its name took its place there
(delivery.superseded judges it). The batch's rows reach the store with the next batch when the store
is down. An instance another one took over finishes nothing: the claims are the taker's now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from json_workflow import durable, logs
from json_workflow.delivery import records
from json_workflow.delivery.flush import Barrier
from json_workflow.delivery.folders import Folders
from json_workflow.delivery.model import Delivery, Outcome, Summary
from json_workflow.delivery.superseded import Superseded
from json_workflow.errors import Fenced, StoreError
from json_workflow.intake.claim import Claims
from json_workflow.logs import log
from json_workflow.names import shown
from json_workflow.routing.route import routed_names
from json_workflow.store import Store
from json_workflow.store.rows import Batch, FinishedFile

_LEFT_CLAIMED, _PENDING = Outcome.LEFT_CLAIMED, Outcome.PENDING


class Finisher:
    """The last stage of one pipeline; keeps what the store could not record yet, and whether it was fenced."""

    def __init__(self, claims: Claims, store: Store, clock: Callable[[], float]):
        self.claims, self.store, self.clock = claims, store, clock
        self.unrecorded: list[tuple[list[str], list[FinishedFile], Batch]] = []  # finished while the store was down
        self.unforgotten: list[str] = []  # claims whose removal is durable, for the journal to forget
        self.fenced = False  # another instance took over this one's claims: nothing more is finished here
        self.superseded = Superseded(claims, store, clock)

    def taken_over(self, error: Exception | None = None) -> bool:
        """True once this instance is known to be taken over (by `error`, or by asking the store)."""
        if not self.fenced and (isinstance(error, Fenced) or self.store.fenced()):
            self.fenced = True
        return self.fenced

    def batch(
        self,
        deliveries: list[Delivery],
        started: float,
        summary: Summary,
        forget: list[str],
        folders: Folders,
        barrier: Barrier,
    ) -> list[str]:
        """Finish a batch whose renames were flushed; returns the claims removed (to forget once that is durable)."""
        if self.taken_over():
            for d in deliveries:  # the taker finished them, or finishes them: nothing here is ours to touch
                d.left_claimed = True
            self.unrecorded.clear()
            return []
        say = log.isEnabledFor(logging.INFO)
        lines = [(d.worker, self._guarded(d, summary, folders, barrier, say)) for d in deliveries]
        done, seconds, now = self.clock(), time.perf_counter() - started, time.time()
        forget, self.unforgotten = self.unforgotten + forget, []
        self.unrecorded.append((forget, records.finished(deliveries), Batch(done, len(deliveries), seconds)))
        while self.unrecorded:  # oldest first: a store that was down gets every finished batch once it is back
            try:
                self.store.finish_batch(*self.unrecorded[0])
            except Exception as e:  # kept for the next batch; a restart meanwhile finds their claims gone
                if not self.taken_over(e):
                    log.error("Cannot record a finished batch in the journal, it is tried again with the next: %s", e)
                break
            self.unrecorded.pop(0)
        if self.fenced:  # taken over before its rows were recorded: the taker says what became of the files
            return []
        logs.by_worker(lines, now)  # after the rows (a taken-over instance writes no success line), at their time
        logs.flush()
        return [d.candidate.path for d in deliveries if not d.left_claimed]

    def forget(self, claims: list[str]) -> None:
        """Forget claims whose removal is durable; kept for the next batch when the store cannot now."""
        claims, self.unforgotten = self.unforgotten + claims, []
        if not claims:
            return
        try:
            self.store.forget(claims)
        except StoreError as e:
            if not self.taken_over(e):
                log.error("Cannot forget finished claims in the journal, it is tried again with the next: %s", e)
                self.unforgotten = claims

    def _guarded(self, d: Delivery, summary: Summary, folders: Folders, barrier: Barrier, say: bool) -> str | None:
        try:
            return self._file(d, summary, folders, barrier, say)
        except Exception as e:  # left in the claim area: the journal finishes it at the next start
            if not self.taken_over():
                log.error("Cannot finish %s, it is finished at the next start", d.candidate.display, exc_info=e)
            d.left_claimed = True
            return None

    def _file(self, d: Delivery, summary: Summary, folders: Folders, barrier: Barrier, say: bool) -> str | None:
        """Release a finished file's claim and count it; returns its log lines unless they are logged already."""
        d.seconds, tag, outcome = time.perf_counter() - d.started, {"worker": d.worker}, d.outcome
        if outcome == _LEFT_CLAIMED:
            summary.pending += 1
            return None
        if outcome == _PENDING:  # nothing published: back to the hot folder to wait there
            d.discard()
            if self.claims.hand_back(d.candidate):
                summary.pending += 1
            else:
                self.superseded.found(d, summary, folders)
            return None
        self.claims.release(d.candidate, d.moved)
        if not d.moved:  # a move noted its claim folder already
            barrier.add(durable.parent(d.candidate.path))
        if d.rejection is not None:
            summary.failed += 1
            reason = f"{d.rejection.stage}: {d.rejection.reason}"
            log.error(
                "[%s] Failed %s at %s -> %s", d.source, d.candidate.display, reason, shown(str(d.failed_as)), extra=tag
            )
            return None
        summary.archived += 1
        routes = routed_names(d.destinations)
        if routes:
            summary.routed += 1
        if not say:  # no one reads INFO lines (--quiet, --log-level warning): they are not even made
            return None
        display = d.candidate.display
        lines = [f"Stored file: {display}"]
        if routes:
            lines.append(f"Routed to: {', '.join(routes)}")
        lines += d.skipped
        lines.append(f"Successfully processed {display} ({d.seconds:.2f}s)")
        head = f"[{d.source}] "  # formatted once: a StrEnum formats at a quarter of a str's speed
        return "\n".join(head + line for line in lines)
