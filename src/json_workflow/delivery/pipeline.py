"""The pipeline: batches of files through prepare, journal, write, flush, publish, finish.

Every step that could be interrupted is recorded before it happens, so `recover` can finish whatever
a crash left in the claim area without losing a file or delivering a copy twice.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from json_workflow import logs
from json_workflow.config import Config
from json_workflow.delivery import records, recovery, stages
from json_workflow.delivery.finish import Finisher
from json_workflow.delivery.flush import Barrier, FlushConveyor
from json_workflow.delivery.folders import Folders
from json_workflow.delivery.model import Delivery, Summary
from json_workflow.delivery.prepare import Parts, prepare_delivery, unforeseen
from json_workflow.delivery.remote import ON_THE_WAY, Senders
from json_workflow.delivery.workers import Workers
from json_workflow.errors import DestinationError, Rejected, StoreError, WorkflowError, detached
from json_workflow.intake import Source
from json_workflow.intake.claim import Claims, worker_areas
from json_workflow.intake.scan import Candidate
from json_workflow.logs import log
from json_workflow.plural import count
from json_workflow.store import Store

# A file whose processing the process died in this many times in a row is set aside unread.
CRASHES_BEFORE_SET_ASIDE = 3
# Files per flush. Larger batches amortise the flush further but hold more temporaries at once.
BATCH = 256


@dataclass
class _Batch:
    """A batch on its way through the stages: its deliveries, those with temporaries written, its start."""

    deliveries: list[Delivery]
    staged: list[Delivery]
    started: float


class Pipeline:
    """Processes candidates in batches with a pool of named worker threads; one per run or service."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Callable[[], float] = time.time,
        area: Path | None = None,
        first_worker: int = 1,
        wake: Callable[[], None] | None = None,
    ):
        """`area`: a worker process's own claim area (default: the instance's); `first_worker`: its first thread's
        number (a worker process's threads are named after those of the processes before it); `wake`: called
        when a file sent to a URL comes back (a service waits for its files, not for these)."""
        self.store, self.wake = store, wake
        self.clock = clock
        self.claims = Claims(config.hot, area or config.claim_area, config.permissions.dir_mode)
        self.workers = Workers(config.workers, first=first_worker)
        self.finisher = Finisher(self.claims, store, clock)
        self.store_failed: Exception | None = None  # the last time the journal refused a batch (None: it worked)
        # Files gone before they could be claimed, kept for a worker process to say (None: not kept).
        self.vanished: list[str] | None = None
        self._configure(config, poisoned={})

    def _configure(self, config: Config, poisoned: dict[str, Rejected]) -> None:
        self.config = config
        self.folders = Folders(config)
        self.barrier = Barrier(config.flush)
        self.parts = Parts(config, self.claims, config.router(), self.folders, self.barrier, poisoned)
        self.conveyor: FlushConveyor[_Batch] = FlushConveyor(self.barrier, self._publish)
        self.senders = Senders(config.routes, self.store, self.folders, self.clock, self.wake)

    def close(self) -> None:
        self.workers.close()
        self.conveyor.close()
        self.senders.close()

    def process(
        self,
        candidates: Iterable[tuple[Candidate, Source]],
        progress: Callable[[int], None] | None = None,
        summary: Summary | None = None,
    ) -> Summary:
        """Process (candidate, source) pairs; the run goes on whatever one file or one destination does."""
        started = time.perf_counter()
        summary = summary or Summary()
        for batch in _batches(candidates, BATCH):
            self.submit(batch, summary)
            while self.senders.on_the_way() > max(0, ON_THE_WAY - BATCH):  # room for a batch; the files wait unread
                self.senders.wait()
                self.submit([], summary)
            if progress:
                progress(len(batch))
            if self.store_failed is not None:  # every further file would only be claimed and handed back
                summary.stopped = f"the store failed, the files left wait in the hot folder: {self.store_failed}"
                break
        self.drain(summary)
        summary.seconds += time.perf_counter() - started
        return summary

    def submit(self, batch: list[tuple[Candidate, Source]], summary: Summary) -> list[Delivery]:
        """Stage a batch while the flush in flight runs, then move the batches before it on a stage.

        Returns the deliveries finished meanwhile (of earlier batches); `drain` finishes the rest.
        """
        current = self._stage(batch)
        done = self._advance(summary) if self.conveyor.busy else []
        self.conveyor.start(current, background=self.conveyor.overlap)
        return done

    def drain(self, summary: Summary, sent: bool = True) -> list[Delivery]:
        """Finish every batch in flight (no more files are waiting), and judge the superseded versions whose
        newer file is written now; returns their deliveries. `sent`: also wait for the files on their way
        to URLs (false: only those back already are finished)."""
        done = []
        while True:
            if self.senders.back():  # an empty batch takes them
                done += self.submit([], summary)
            elif sent and self.senders.busy():
                self.senders.wait()
                continue
            if not self.conveyor.busy:
                break
            done += self._advance(summary)
            if self.conveyor.pending():
                self.conveyor.start(None, background=False)
        return done + self.finisher.superseded.revisit(summary, self.folders)

    def idle(self, summary: Summary) -> list[Delivery]:
        """Nothing more to take now: finish every batch in flight (not waiting for files sent to URLs)."""
        return self.drain(summary, sent=False)

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration (rules, permissions, limits) from the next batch on."""
        self.drain(Summary())
        self.conveyor.close()
        self.senders.close()
        self._configure(config, self.parts.poisoned)

    def forget_trouble(self) -> None:
        """Try every destination folder again (the next scan, or a remounted hot folder)."""
        self.folders.forget_trouble()

    def forget_folders(self) -> None:
        """The hot folder was replaced: the claim area is made again."""
        self.claims.forget_folders()

    def claimed(self) -> int:
        """Files claimed and not finished yet."""
        return len(self.claims.holding)

    def width(self) -> int:
        """How many processes share the files: a batch of batch_size each."""
        return 1

    def expect(self, files: int) -> None:
        """`files` wait to be processed (a SharedPipeline starts its worker processes for a large backlog)."""

    # --- the stages --------------------------------------------------------------------------------
    def _stage(self, batch: list[tuple[Candidate, Source]]) -> _Batch:
        """Claim, read, parse and route the batch, record its copies in the journal, write them."""
        now, started = self.clock(), time.perf_counter()
        prepared = self.workers.map("prepare", lambda item: prepare_delivery(item[0], item[1], self.parts, now), batch)
        for _, trouble in prepared:
            if trouble:
                self._report_unavailable(trouble)
        deliveries = [d for d, _ in prepared if not d.vanished]
        if self.vanished is not None and len(deliveries) < len(prepared):  # claimed meanwhile by another
            self.vanished += [d.candidate.origin for d, _ in prepared if d.vanished]
        if log.isEnabledFor(logging.INFO):  # made only where a handler shows them
            logs.by_worker((d.worker, f"[{d.source}] Processing: {d.candidate.display}") for d in deliveries)
        planned = [d for d in deliveries if d.copies]
        try:
            rows = self.store.record_plan(records.planned(planned), records.received(deliveries, now))
        except Exception as e:  # nothing is written yet: every file of the batch waits for the journal
            self._refused(deliveries, e)
            for d in planned:
                d.copies = []
            planned = []
        else:
            self.store_failed = None
            for d, row in zip(deliveries, rows, strict=True):
                d.row = row
            kept = self.senders.hand(planned)  # sent first, in the background; they join a later batch
            if len(kept) < len(planned):
                handed = {id(d) for d in planned} - {id(d) for d in kept}
                deliveries = [d for d in deliveries if id(d) not in handed]
            planned = [d for d in kept if d.copies]
        back, troubles = self.senders.take(now)  # files whose copies to URLs are all answered
        for trouble in troubles:
            self._report_unavailable(trouble)
        deliveries += back
        planned += [d for d in back if d.copies]
        for trouble in self.workers.map("write", lambda d: self._write(d, now), planned):
            if trouble:
                self._report_unavailable(trouble)
        return _Batch(deliveries, [d for d in planned if d.copies], started)

    def _write(self, d: Delivery, now: float) -> DestinationError | None:
        try:
            return stages.write(d, self.folders, self.barrier, now)
        except Exception as e:  # not the destination's fault: the file fails when it is taken again
            d.discard()
            self.parts.poisoned[d.candidate.origin] = rejection = unforeseen(d, e, "deliver")
            d.waiting_on = detached(WorkflowError(rejection.reason))
            return None

    def _publish(self, b: _Batch) -> None:
        """Rename a batch's flushed temporaries into place (once the journal says they are flushed)."""
        try:
            self.store.mark_staged(d.candidate.path for d in b.staged)
        except Exception as e:  # not known to be flushed, so nothing may be published: the files wait
            self._refused(b.staged, e)
            return
        for d in b.staged:
            try:
                d.failed_as, d.moved = stages.publish(d.copies, self.barrier)
            except Exception as e:  # a folder removed or remounted since it was written; or a taker published it
                if not self.finisher.taken_over():
                    log.error("Cannot publish %s, it is finished at the next start: %s", d.candidate.display, e)
                d.waiting_on, d.left_claimed = detached(WorkflowError(f"cannot publish: {e}")), True

    def _refused(self, deliveries: list[Delivery], error: Exception) -> None:
        """The journal refused a batch's plan or publication: its files wait (or, taken over, are left alone)."""
        if self.finisher.taken_over(error):  # the claims are another instance's now: nothing here touches them
            for d in deliveries:
                d.left_claimed = True
            return
        log.error("Cannot record a batch in the journal, its %s wait: %s", count(len(deliveries), "file"), error)
        self.store_failed = error
        for d in deliveries:
            d.discard()
            d.waiting_on = d.waiting_on or detached(StoreError(str(error)))

    def _advance(self, summary: Summary) -> list[Delivery]:
        """Wait for the flush in flight, then finish the batch whose renames it made durable."""
        flushed = self.conveyor.wait()
        error = flushed.error
        if error is not None:
            staged = sum(len(b.staged) for b in (flushed.temporaries, flushed.renames) if b is not None)
            log.error("Flush failed, %s wait for the next run: %s", count(staged, "file"), error)
            if flushed.temporaries is not None:  # not published: its temporaries may not be on the disk
                for d in flushed.temporaries.staged:
                    d.discard()
                    d.waiting_on = DestinationError("flush", error)
        if flushed.renames is None:  # their removal is durable: the journal forgets them (or with the next batch)
            self.finisher.forget(flushed.removals)
            return []
        b = flushed.renames
        if error is not None:
            for d in b.staged:
                if d.waiting_on is None:  # published, not known durable: left claimed for the next start
                    d.waiting_on, d.left_claimed = DestinationError("flush", error), True
        # The journal forgets the claims after the next flush, once their removal is durable too: a claim that
        # a crash brought back while the journal had forgotten it would be delivered again. (It forgets those
        # of an earlier batch, `removals`, in the same transaction as this one's statistics.)
        removed = self.finisher.batch(b.deliveries, b.started, summary, flushed.removals, self.folders, self.barrier)
        self.conveyor.removals += removed
        return b.deliveries

    def _report_unavailable(self, trouble: DestinationError) -> None:
        log.error("Destination unavailable, its files stay in the hot folder until it is fixed: %s", trouble)
        self.store.record_trouble(trouble.folder, str(trouble), self.clock())

    # --- after a crash -----------------------------------------------------------------------------
    def recover(self, summary: Summary, area: Path | None = None) -> list[Delivery]:
        """Finish what a crash left claimed, here or in `area` (a dead instance's or worker process's), and in
        the worker processes' areas inside it; returns the deliveries of the files processed afresh."""
        done = self._recover(summary, area)
        for worker in worker_areas(area or self.claims.area):
            done += self._recover(summary, worker)
        return done

    def _recover(self, summary: Summary, area: Path | None) -> list[Delivery]:
        """Finish what a crash left claimed in one claim area (`area`: not this pipeline's own).

        Any of them may be what stopped the process, so each is processed alone, its restart counted
        first: a stop while one is processed is its own. One that was being processed at each of the last
        CRASHES_BEFORE_SET_ASIDE stops is set aside unread, so that it cannot stop the service forever.
        """
        claims, adopt = self.claims, None
        if area is not None:  # another's: what it left staged is finished there, the rest moved here
            claims, adopt = Claims(self.config.hot, area, self.config.permissions.dir_mode), self.claims
        recovered = recovery.recover(claims, self.store, self.barrier, self.clock(), self.parts.router, adopt)
        if area is not None:
            claims.tidy()
        summary.archived += recovered.archived
        summary.routed += recovered.routed
        summary.failed += recovered.failed
        done = []
        for candidate in recovered.superseded:  # a newer file of its name took its place while it was taken
            d = Delivery(candidate, Source.RECOVERY, started=time.perf_counter(), waiting_on=_NEWER)
            self.finisher.superseded.found(d, summary, self.folders, alone=True)
            done.append(d)
        for candidate, restarts in recovered.fresh:
            if restarts >= CRASHES_BEFORE_SET_ASIDE:
                log.error(
                    "[RECOVERY] json-workflow stopped %d times while processing %s; it is set aside unread",
                    restarts,
                    candidate.display,
                )
                self.parts.poisoned[candidate.origin] = Rejected(
                    f"json-workflow stopped unexpectedly {restarts} times while processing this file; it was set "
                    "aside unread so that the other files go on (the log before those stops tells why)",
                    "recovery",
                )
            self.store.restart(candidate.path)
            done += self.submit([(candidate, Source.RECOVERY)], summary) + self.drain(summary)
        return done


_NEWER = WorkflowError("a crash interrupted it, and a newer file of its name arrived meanwhile")
T = TypeVar("T")


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
