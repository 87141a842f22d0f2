"""The pipeline: claim, parse and route a batch, record it in the journal, write, flush, publish, finish.

Every step that could be interrupted is recorded before it happens, so `recover` can finish whatever
a crash left in the claim area without losing a file or delivering a copy twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from json_workflow import logs
from json_workflow.config import Config
from json_workflow.delivery import durable, recovery
from json_workflow.delivery import stages as deliver
from json_workflow.delivery.stages import Delivery, Folders
from json_workflow.delivery.workers import Workers
from json_workflow.errors import DestinationError, Rejected, StillWriting, StoreError, WorkflowError, detached
from json_workflow.intake.claim import Claims
from json_workflow.intake.scan import Candidate, read_job_file, scan
from json_workflow.intake.stability import ignore_lease_breaks
from json_workflow.logs import log
from json_workflow.parse import parse_job
from json_workflow.route import Router, routed_names
from json_workflow.store import stats
from json_workflow.store.journal import Journal

RECOVERY = "RECOVERY"
# A file whose processing the process died in this many times in a row is set aside unread.
CRASHES_BEFORE_SET_ASIDE = 3
# Files per flush. Larger batches amortise the flush further but hold more temporaries at once.
BATCH = 256
# A flush that waits for the disk at least this long runs in the flush thread while the next batch is
# staged. A quicker one (tmpfs, a disk cache that absorbs it) is done in place: handing work to another
# thread, and sharing the GIL with it, costs more than such a flush.
OVERLAP_SECONDS = 0.001


@dataclass
class Summary:
    """What a run did, counted per file."""

    archived: int = 0
    routed: int = 0
    failed: int = 0
    pending: int = 0
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return self.archived + self.failed

    def line(self) -> str:
        return (
            f"Processed {self.processed} files in {self.seconds:.2f}s: {self.archived} archived"
            f" ({self.routed} routed), {self.failed} failed, {self.pending} pending"
        )


@dataclass
class _Batch:
    """A batch on its way through the stages: its deliveries, those with temporaries written, its start."""

    deliveries: list[Delivery]
    staged: list[Delivery]
    started: float


class Pipeline:
    """Processes candidates in batches with a pool of named worker threads; one per run or service.

    A batch is staged (claimed, read, its temporaries written), flushed, published (renamed into place),
    flushed, finished (its claims released), flushed, and forgotten by the journal. One flush serves
    three batches at once, each at its own stage, and runs in a thread of its own while the next batch
    is staged, so the disk's wait overlaps our own work instead of adding to it.
    """

    def __init__(self, config: Config, journal: Journal, clock: Callable[[], float] = time.time):
        self.config = config
        self.journal = journal
        self.clock = clock
        self.claims = Claims(config.hot, config.permissions.dir_mode)
        self.router = Router(config)
        self.folders = Folders(config)
        self.barrier = durable.Barrier(config.flush)
        self.workers = Workers(config.workers)
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="flush")
        self._flushing: Future | None = None  # the flush in flight
        self._written: _Batch | None = None  # its temporaries are in the flush in flight
        self._published: _Batch | None = None  # its renames are in the flush in flight
        self._released: list[str] = []  # claims whose removal is in the flush in flight
        self._flush_seconds = 0.0  # how long a flush waits for the disk, lately
        self._flush_failed = False  # the last flush raised an error
        # Files to fail without reading them again (hot-folder path -> why): an error no one foresaw
        # while writing them, or a file that a crash interrupted again and again.
        self._poisoned: dict[str, Rejected] = {}

    def close(self) -> None:
        self.workers.close()
        self._flusher.shutdown()

    def process(
        self,
        candidates: Iterable[tuple[Candidate, str]],
        progress: Callable[[int], None] | None = None,
        summary: Summary | None = None,
    ) -> Summary:
        """Process (candidate, source) pairs; the run goes on whatever one file or one destination does."""
        started = time.perf_counter()
        summary = summary or Summary()
        for batch in _batches(candidates, BATCH):
            self.submit(batch, summary)
            if progress:
                progress(len(batch))
        self.drain(summary)
        summary.seconds += time.perf_counter() - started
        return summary

    def process_batch(self, batch: list[tuple[Candidate, str]], summary: Summary) -> list[Delivery]:
        """Process one batch to the end, with whatever was in flight; returns every delivery finished."""
        return self.submit(batch, summary) + self.drain(summary)

    def submit(self, batch: list[tuple[Candidate, str]], summary: Summary) -> list[Delivery]:
        """Stage a batch while the flush in flight runs, then move the batches before it on a stage.

        Returns the deliveries finished meanwhile (of earlier batches); `drain` finishes the rest.
        """
        current = self._stage(batch)
        done = self._advance(summary)
        self._start(current, background=self._flush_seconds >= OVERLAP_SECONDS)
        return done

    def drain(self, summary: Summary) -> list[Delivery]:
        """Finish every batch in flight (no more files are waiting); returns their deliveries."""
        done = []
        while self._flushing is not None:
            done += self._advance(summary)
            # Claims to forget wait for a later flush when this one failed: the disk may stay broken.
            if self._published is not None or (self._released and not self._flush_failed):
                self._start(None, background=False)
        return done

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration (rules, permissions, limits) from the next batch on."""
        self.drain(Summary())
        self.config = config
        self.router = Router(config)
        self.folders = Folders(config)
        self.barrier = durable.Barrier(config.flush)

    def _start(self, batch: _Batch | None, background: bool) -> None:
        """Flush what the barrier noted, then publish `batch`: in the flush thread, or here and now."""
        flush = self.barrier.take()
        self._written = batch

        def job():
            started = time.perf_counter()
            flush()
            self._flush_seconds += (time.perf_counter() - started - self._flush_seconds) / 4  # a running mean
            if batch is not None:
                self._publish(batch)

        if background:
            self._flushing = self._flusher.submit(job)
            return
        self._flushing = Future()
        try:
            job()
        except OSError as e:
            self._flushing.set_exception(e)
        else:
            self._flushing.set_result(None)

    def _advance(self, summary: Summary) -> list[Delivery]:
        """Wait for the flush in flight, then move each batch it covered on by one stage."""
        if self._flushing is None:
            return []
        flushing, self._flushing = self._flushing, None
        try:
            flushing.result()
            error = None
        except OSError as e:
            error = e
        self._flush_failed, forget = error is not None, []
        if error is not None:
            staged = sum(len(b.staged) for b in (self._written, self._published) if b is not None)
            log.error("Flush failed, %d files wait for the next run: %s", staged, error)
        else:  # until their removal is durable, the journal must still know these claims
            forget, self._released = self._released, []
        done = []
        if self._published is not None:
            done = self._finish_batch(self._published, error, summary, forget)
            self._published = None
        elif forget:
            self.journal.forget(forget)
        if self._written is not None:
            if error is not None:  # not published: its temporaries may not be on the disk
                for d in self._written.staged:
                    d.discard()
                    d.pending = DestinationError("flush", error)
            self._published, self._written = self._written, None
        return done

    def _stage(self, batch: list[tuple[Candidate, str]]) -> _Batch:
        """Claim, read, parse and route the batch, record its copies in the journal, write them."""
        now, started = self.clock(), time.perf_counter()
        prepared = self.workers.map("prepare", lambda item: self._prepare(item[0], item[1], now), batch)
        deliveries = [d for d in prepared if not d.vanished]
        _log_by_worker((d.worker, f"[{d.source}] Processing: {d.candidate.display}") for d in deliveries)
        planned = [d for d in deliveries if d.copies]
        try:
            self.journal.plan(
                [(d.candidate.path, c.temp, c.final, c.kind) for d in planned for c in d.copies],
                also=lambda db: stats.received(db, deliveries, now),
            )
        except Exception as e:  # nothing is written yet: every file of the batch waits for the journal
            log.error("Cannot record a batch in the journal, its %d files wait: %s", len(deliveries), e)
            for d in planned:
                d.copies, d.pending = [], detached(StoreError(str(e)))
            planned = []
        for trouble in self.workers.map("write", lambda d: self._write(d, now), planned):
            if trouble:
                self._trouble(trouble)
        return _Batch(deliveries, [d for d in planned if d.copies], started)

    def _write(self, d: Delivery, now: float) -> DestinationError | None:
        try:
            return deliver.write(d, self.folders, self.barrier, now)
        except Exception as e:  # not the destination's fault: the file fails when it is taken again
            d.discard()
            self._poisoned[d.candidate.origin] = rejection = self._unforeseen(d, e, "deliver")
            d.pending = detached(WorkflowError(rejection.reason))
            return None

    def _publish(self, b: _Batch) -> None:
        """Rename a batch's flushed temporaries into place (once the journal says they are flushed)."""
        try:
            self.journal.staged(d.candidate.path for d in b.staged)
        except Exception as e:  # not known to be flushed, so nothing may be published: the files wait
            log.error("Cannot record a batch in the journal, its %d files wait: %s", len(b.staged), e)
            for d in b.staged:
                d.discard()
                d.pending = detached(StoreError(str(e)))
            return
        for d in b.staged:
            try:
                d.failed_as, d.moved = deliver.publish(d.copies, self.barrier)
            except Exception as e:  # a folder removed or remounted since it was written, say
                log.error("Cannot publish %s, it is finished at the next start: %s", d.candidate.display, e)
                d.pending, d.left_claimed = detached(WorkflowError(f"cannot publish: {e}")), True

    def _finish_batch(self, b: _Batch, error: OSError | None, summary: Summary, forget: list[str]) -> list[Delivery]:
        """Finish a batch whose renames were flushed: claims released, statistics and log written.

        The journal forgets its claims after the next flush, once their removal is durable too: a claim
        that a crash brought back while the journal had forgotten it would be delivered again. (It
        forgets those of an earlier batch, `forget`, in the same transaction as this one's statistics.)
        """
        if error is not None:
            for d in b.staged:
                if d.pending is None:  # published, not known durable: left claimed for the next start
                    d.pending, d.left_claimed = DestinationError("flush", error), True
        _log_by_worker((d.worker, self._finish_guarded(d, summary)) for d in b.deliveries)
        done, seconds = self.clock(), time.perf_counter() - b.started

        def record(db):
            stats.finished(db, b.deliveries, done)
            stats.batch(db, len(b.deliveries), seconds, done)

        try:
            self.journal.forget(forget, also=record)
        except Exception as e:  # the entries stay: the next start sees their claims are gone and drops them
            log.error("Cannot record a finished batch in the journal: %s", e)
        self._released += [d.candidate.path for d in b.deliveries if not d.left_claimed]
        logs.flush()
        return b.deliveries

    def _prepare(self, candidate: Candidate, source: str, now: float) -> Delivery:
        """Claim, read, parse and route one file and decide its copies; whatever happens, only this file is at stake."""
        d = Delivery(candidate, source=source, started=time.perf_counter(), worker=threading.current_thread().name)
        if not candidate.claimed:
            claimed = self._claim(candidate, source)
            if claimed is None:
                d.vanished = True  # taken between the scan and now, or it cannot be claimed: it stays where it is
                return d
            d.candidate = candidate = claimed
            self.barrier.add(os.path.dirname(candidate.origin))
        self.barrier.add(os.path.dirname(candidate.path))
        try:
            self._decide(d, now)
        except Rejected as rejection:
            d.rejection, d.data = detached(rejection), None
        except StillWriting as e:
            log.info("[%s] %s is still being written (%s); it waits until it is complete", source, candidate.display, e)
            d.pending = detached(e)
            return d
        except OSError as e:
            log.error("[%s] Cannot read %s, it waits for the next run: %s", source, candidate.display, e)
            d.pending = DestinationError(candidate.origin, e)
            return d
        except Exception as e:  # an input no one foresaw must cost this file, never the run
            d.rejection, d.data = self._unforeseen(d, e, "parse"), None
        try:
            trouble = deliver.prepare(d, self.folders, now)
        except Exception as e:
            log.exception("[%s] Cannot decide the copies of %s; it waits in the hot folder", source, candidate.display)
            d.pending, d.copies = detached(WorkflowError(f"cannot decide its copies: {e}")), []
            return d
        if trouble:
            self._trouble(trouble)
        return d

    def _claim(self, candidate: Candidate, source: str) -> Candidate | None:
        try:
            return self.claims.claim(candidate)
        except (OSError, WorkflowError) as e:
            log.error("[%s] Cannot claim %s, it stays in the hot folder: %s", source, candidate.display, e)
            return None

    def _decide(self, d: Delivery, now: float) -> None:
        """Read, parse and route a claimed file; raises what keeps it from going out now."""
        candidate, config = d.candidate, self.config
        if (known := self._poisoned.pop(candidate.origin, None)) is not None:
            raise known
        if candidate.symlink:
            raise Rejected("symlink: links are never followed", "intake")
        read = read_job_file(candidate.path, config.max_file_bytes, config.permissions.file_mode)
        d.data, d.info = read.data, read.info
        try:
            job = parse_job(read.data, candidate.folder)
        except Rejected:
            # Unparsable while a writer we cannot see (another host, another user's file) may still be at it.
            if not read.closed and read.young(config.stable_seconds, now):
                raise StillWriting("unreadable as a job file and modified within stable_seconds") from None
            raise
        d.job = self.folders.with_client_folder(job, candidate.folder is None)
        d.destinations = self.router.plan(d.job)

    def _unforeseen(self, d: Delivery, error: Exception, stage: str) -> Rejected:
        """The rejection for an error no rule foresaw, logged with its traceback for a bug report."""
        log.error(
            "[%s] Unexpected error handling %s at %s",
            d.source,
            d.candidate.display,
            stage,
            exc_info=error,
            extra={"worker": d.worker},
        )
        return detached(Rejected(f"unexpected error ({type(error).__name__}: {error}); please report it", stage))

    def _trouble(self, trouble: DestinationError) -> None:
        log.error("Destination unavailable, its files stay in the hot folder until it is fixed: %s", trouble)
        self.journal.record(lambda db: stats.trouble(db, trouble.folder, str(trouble), self.clock()))

    def _finish_guarded(self, d: Delivery, summary: Summary) -> str | None:
        try:
            return self._finish(d, summary)
        except Exception as e:  # left in the claim area: the journal finishes it at the next start
            log.error("Cannot finish %s, it is finished at the next start", d.candidate.display, exc_info=e)
            d.left_claimed = True
            return None

    def _finish(self, d: Delivery, summary: Summary) -> str | None:
        """Release a finished file's claim and count it; returns its log lines unless they are logged already."""
        tag = {"worker": d.worker}
        d.seconds = time.perf_counter() - d.started
        if d.pending is not None:
            summary.pending += 1
            if not d.left_claimed:  # nothing published: back to the hot folder to wait there
                d.discard()
                if not self.claims.hand_back(d.candidate):
                    self._superseded(d)
            return None
        self.claims.release(d.candidate, d.moved)
        if not d.moved:  # a move noted its claim folder already
            self.barrier.add(os.path.dirname(d.candidate.path))
        if d.rejection is not None:
            summary.failed += 1
            log.error(
                "[%s] Failed %s at %s: %s -> %s",
                d.source,
                d.candidate.display,
                d.rejection.stage,
                d.rejection.reason,
                d.failed_as,
                extra=tag,
            )
            return None
        summary.archived += 1
        shown, routes = d.candidate.display, routed_names(d.destinations)
        lines = [f"Stored file: {shown}"]
        if routes:
            summary.routed += 1
            lines.append(f"Routed to: {', '.join(routes)}")
        lines.append(f"Successfully processed {shown} ({d.seconds:.2f}s)")
        return "\n".join(f"[{d.source}] {line}" for line in lines)

    def _superseded(self, d: Delivery) -> None:
        # A newer file of the same name arrived while this one waited; delivering this one later would
        # overwrite the newer one, so it is set aside (never dropped) for an operator to look at.
        try:
            where = deliver.set_aside(
                d,
                self.folders,
                f"superseded by a newer file of the same name while its destination was unavailable ({d.pending})",
                self.clock(),
            )
        except OSError as e:
            log.error("Cannot set aside %s, it stays in the claim area for the next start: %s", d.candidate.display, e)
            d.left_claimed = True
            return
        self.claims.release(d.candidate)
        log.warning(
            "[%s] %s was superseded by a newer file of the same name while waiting -> %s",
            d.source,
            d.candidate.display,
            where,
        )

    def recover(self, summary: Summary) -> list[Delivery]:
        """Finish what a crash left claimed; returns the deliveries of the files processed afresh.

        Any of them may be what stopped the process, so each is processed alone, its restart counted
        first: a stop while one is processed is its own. One that was being processed at each of the last
        CRASHES_BEFORE_SET_ASIDE stops is set aside unread, so that it cannot stop the service forever.
        """
        done = []
        for candidate, restarts in recovery.recover(self.claims, self.journal, self.barrier, summary, self.clock()):
            if restarts >= CRASHES_BEFORE_SET_ASIDE:
                log.error(
                    "[RECOVERY] json-workflow stopped %d times while processing %s; it is set aside unread",
                    restarts,
                    candidate.display,
                )
                self._poisoned[candidate.origin] = Rejected(
                    f"json-workflow stopped unexpectedly {restarts} times while processing this file; it was set "
                    "aside unread so that the other files go on (the log before those stops tells why)",
                    "recovery",
                )
            self.journal.restart(candidate.path)
            done += self.process_batch([(candidate, RECOVERY)], summary)
        return done


def _log_by_worker(lines: Iterable[tuple[str, str | None]]) -> None:
    """Log a batch's (worker, lines) as one INFO record per worker; the formatter heads every line.

    The seed's log has four lines per file; a record costs more than the lines in it, and the log is
    written out once per batch anyway.
    """
    by_worker: dict[str, list[str]] = {}
    for worker, text in lines:
        if text:
            by_worker.setdefault(worker, []).append(text)
    for worker, texts in by_worker.items():
        log.info("\n".join(texts), extra={"worker": worker})


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def check_hot_folder(config: Config) -> None:
    """Fail clearly when the hot folder is not there (a missing mount, a wrong root)."""
    try:
        with os.scandir(config.hot):
            pass
    except (FileNotFoundError, NotADirectoryError):
        raise WorkflowError(f"hot folder {config.hot} does not exist or is not a folder (paths.hot, root)") from None
    except OSError as e:  # a user that may not list it, a share that does not answer
        raise WorkflowError(f"hot folder {config.hot} cannot be read: {e.strerror} (paths.hot, root)") from None


@contextlib.contextmanager
def exclusive(config: Config) -> Iterator[Journal]:
    """Hold the state folder's lock (one instance per hot folder) and open the journal."""
    try:
        durable.make_folder(config.state, config.permissions.dir_mode, config.root)
        lock = open(config.state / "run.lock", "a")
    except OSError as e:
        raise WorkflowError(f"cannot use the state folder {config.state}: {e.strerror} (paths.state)") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkflowError(f"another json-workflow is processing {config.hot} (lock {lock.name})") from None
        journal = Journal(config.state)
        try:
            yield journal
        finally:
            journal.close()


def run_once(config: Config, progress: Callable[[int], None] | None = None, clock=time.time) -> Summary:
    """Finish whatever a crash left, then process everything in the hot folder once."""
    check_hot_folder(config)
    ignore_lease_breaks()  # here, in the main thread: the workers' lease checks rely on it
    with exclusive(config) as journal:
        pipeline = Pipeline(config, journal, clock)
        with journal.transaction() as db:
            run = stats.run_started(db, "once", clock())
        try:
            summary = Summary()
            pipeline.recover(summary)
            return pipeline.process(((candidate, "STARTUP") for candidate in scan(config.hot)), progress, summary)
        finally:
            pipeline.close()
            pipeline.claims.tidy()
            journal.record(lambda db: stats.run_stopped(db, run, clock()))
