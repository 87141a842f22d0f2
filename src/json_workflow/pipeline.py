"""The pipeline: candidates in, batches staged by workers, flushed once, published, originals removed."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from json_workflow import deliver, durable
from json_workflow.config import Config
from json_workflow.deliver import Delivery, Folders
from json_workflow.errors import DestinationError, Rejected, WorkflowError
from json_workflow.intake import Candidate, scan
from json_workflow.logs import log
from json_workflow.parse import parse_job
from json_workflow.route import plan, routed_names

# Files per flush. Larger batches amortise the flush further but hold more temporaries at once.
BATCH = 256


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


def read_job_file(path: str, limit: int) -> bytes:
    """Read a job file without following a symlink; Rejected when it is not a regular file or too big."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Rejected("symlink: links are never followed", "intake") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Rejected("not a regular file", "intake")
        if info.st_size > limit:
            raise Rejected(f"file is {info.st_size} bytes, over max_file_bytes ({limit})", "intake")
        chunks, total = [], 0
        while chunk := os.read(fd, max(info.st_size, 65536)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise Rejected(f"file grew past max_file_bytes ({limit}) while being read", "intake")
        return b"".join(chunks)
    finally:
        os.close(fd)


class Pipeline:
    """Processes candidates in batches with a pool of named workers; one per run or service."""

    def __init__(self, config: Config, source: str = "STARTUP", clock: Callable[[], float] = time.time):
        self.config = config
        self.source = source
        self.clock = clock
        self.folders = Folders(config)
        self.barrier = durable.Barrier(config.flush)
        numbers = itertools.count(1)
        self.pool = ThreadPoolExecutor(
            config.workers, initializer=lambda: setattr(threading.current_thread(), "name", f"worker-{next(numbers)}")
        )

    def close(self) -> None:
        self.pool.shutdown()

    def process(self, candidates: Iterable[Candidate], progress: Callable[[int], None] | None = None) -> Summary:
        """Process every candidate; the run goes on whatever one file or one destination does."""
        started = time.perf_counter()
        summary = Summary()
        for batch in _batches(candidates, BATCH):
            self._process_batch(batch, summary)
            if progress:
                progress(len(batch))
        self.barrier.flush()  # the last batch's removals from the hot folder
        summary.seconds = time.perf_counter() - started
        return summary

    def _process_batch(self, batch: list[Candidate], summary: Summary) -> None:
        deliveries = list(self.pool.map(self._stage, batch))
        staged = [d for d in deliveries if d.copies or d.failed_temp]
        if not self._flush(staged):
            return self._count_pending(deliveries, summary)
        now = self.clock()
        for d in staged:
            try:
                deliver.publish(d, self.barrier, now)
            except OSError as e:  # a folder removed or remounted since staging
                log.error("Cannot publish %s, it stays in the hot folder: %s", d.candidate.display, e)
                d.discard()
                d.pending = DestinationError(d.candidate.display, e)
        if not self._flush(staged):
            return self._count_pending(deliveries, summary)
        for d in deliveries:
            self._finish(d, summary)

    def _flush(self, staged: list[Delivery]) -> bool:
        try:
            self.barrier.flush()
            return True
        except OSError as e:
            # Nothing staged since the last flush is known to be durable, so every original stays.
            log.error("Flush failed, %d files stay in the hot folder for the next run: %s", len(staged), e)
            for d in staged:
                d.discard()
            return False

    def _count_pending(self, deliveries: list[Delivery], summary: Summary) -> None:
        summary.pending += sum(not d.vanished for d in deliveries)

    def _stage(self, candidate: Candidate) -> Delivery:
        d = Delivery(candidate, started=time.perf_counter(), worker=threading.current_thread().name)
        log.info("[%s] Processing: %s", self.source, candidate.display)
        try:
            if candidate.symlink:
                raise Rejected("symlink: links are never followed", "intake")
            data = read_job_file(candidate.path, self.config.max_file_bytes)
            d.size = len(data)
            d.job = parse_job(data, candidate.folder)
        except Rejected as rejection:
            d.rejection = rejection
            deliver.stage_failure(d, self.folders, self.barrier, self._trouble, self.clock())
        except FileNotFoundError:
            d.vanished = True  # taken by someone else between the scan and now
        except OSError as e:
            log.error("[%s] Cannot read %s, it stays in the hot folder: %s", self.source, candidate.display, e)
            d.pending = DestinationError(candidate.path, e)
        else:
            d.destinations = plan(d.job, self.config)
            deliver.stage_copies(d, data, self.folders, self.barrier, self._trouble)
        return d

    def _trouble(self, trouble: DestinationError) -> None:
        log.error("Destination unavailable, its files stay in the hot folder until it is fixed: %s", trouble)

    def _finish(self, d: Delivery, summary: Summary) -> None:
        tag = {"worker": d.worker}
        if d.vanished:
            return
        if d.pending is not None:
            summary.pending += 1
            return
        try:
            os.unlink(d.candidate.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            # Every copy is safe; only the cleanup failed, so the next run would deliver it again.
            log.error("Delivered %s but cannot remove it from the hot folder: %s", d.candidate.display, e)
        self.barrier.add(os.path.dirname(d.candidate.path))
        seconds = time.perf_counter() - d.started
        if d.rejection is not None:
            summary.failed += 1
            log.error(
                "[%s] Failed %s at %s: %s -> %s",
                self.source, d.candidate.display, d.rejection.stage, d.rejection.reason, d.failed_as, extra=tag,
            )
            return
        summary.archived += 1
        log.info("[%s] Stored file: %s", self.source, d.candidate.display, extra=tag)
        routes = routed_names(d.destinations)
        if routes:
            summary.routed += 1
            log.info("[%s] Routed to: %s", self.source, ", ".join(routes), extra=tag)
        log.info("[%s] Successfully processed %s (%.2fs)", self.source, d.candidate.display, seconds, extra=tag)


def _batches(items: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def check_hot_folder(config: Config) -> None:
    """Fail clearly when the hot folder is not there (a missing mount, a wrong root)."""
    if not config.hot.is_dir():
        raise WorkflowError(f"hot folder {config.hot} does not exist or is not a folder (paths.hot, root)")


@contextlib.contextmanager
def exclusive(config: Config) -> Iterator[None]:
    """Hold the state folder's lock, so two runs never work on one hot folder at once."""
    durable.make_folder(config.state, config.permissions.dir_mode, config.root)
    with open(config.state / "run.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkflowError(f"another json-workflow is processing {config.hot} (lock {lock.name})") from None
        yield


def run_once(config: Config, progress: Callable[[int], None] | None = None, clock=time.time) -> Summary:
    """Process everything in the hot folder once."""
    check_hot_folder(config)
    with exclusive(config):
        pipeline = Pipeline(config, "STARTUP", clock)
        try:
            return pipeline.process(scan(config.hot), progress)
        finally:
            pipeline.close()
