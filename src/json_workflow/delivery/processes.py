"""Worker processes: a large backlog shared among the cores, each process a whole pipeline over its share.

Where files wait for nothing (tmpfs, the page cache) the per-file work is Python, under one lock per
process: threads cannot use a second core. So a run whose backlog is large forks worker processes,
each with its share of the hot folder's files (by a hash of the name: every version of a name goes
to one process, which judges them in order), a claim area of its own inside this instance's
(`.process-N`) and a connection of its own to the store. The journal's guarantees are each
pipeline's: a worker killed at any instant leaves its claims journaled in its area, and whoever
recovers this instance's area recovers its workers' areas too (the run itself, at once, when one
of its workers dies). Each worker writes the log file itself; on a terminal its console lines go
through a pipe to this process, whose terminal budget and progress bar they share.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import itertools
import logging
import os
import signal
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from json_workflow import logs
from json_workflow.config import Config
from json_workflow.delivery.model import Summary
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.intake import Source
from json_workflow.intake.claim import Claims, worker_area, worker_areas
from json_workflow.intake.scan import scan
from json_workflow.logs import log
from json_workflow.plural import count
from json_workflow.store import Store, open_store

if TYPE_CHECKING:  # imported when a backlog is shared: a run of one process spares its megabyte
    from multiprocessing.connection import Connection

_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
_PR_SET_PDEATHSIG = 1
# A backlog of fewer files is not worth a process more: starting one costs about as much as 50 files.
SHARED_FROM = 200
# A service with this many files ready at once (a burst, a backlog) has no one waiting on a single file: its
# batches take up to BACKLOG_BATCH, sharing a flush and three journal commits (docs/performance.md).
BACKLOG = 200
BACKLOG_BATCH = 50


def batch_files(batch_size: int, ready: int) -> int:
    """Most files in a service's next batch with `ready` files ready: `batch_size`, larger in a backlog."""
    return max(batch_size, BACKLOG_BATCH) if ready >= BACKLOG else batch_size


def share(name: str, processes: int) -> int:
    """Which process (0 is this one) takes the file `name`: the same for every version of a name."""
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) % processes


def backlog_reaches(hot: Path, files: int) -> bool:
    """Whether the hot folder holds at least `files` job files (the listing stops there)."""
    return sum(1 for _ in itertools.islice(scan(hot), files)) >= files


@dataclasses.dataclass
class _Worker:
    """A worker process as its parent sees it: its pipe, the files it finished so far, how it ended."""

    number: int
    pid: int
    pipe: Connection
    area: Path
    done: int = 0  # files finished, for the progress bar
    summary: Summary | None = None  # what it did, once it said so (None: it died before)
    status: int | None = None


def process_shared(
    config: Config, store: Store, pipeline: Pipeline, processes: int, progress: Any, summary: Summary
) -> Summary:
    """Process the hot folder with `processes` processes: this one's share here, the others' in forked workers."""
    started = time.perf_counter() - summary.seconds
    logs.flush()  # nothing buffered here is written again by a worker
    log.info("Sharing the backlog among %s", count(processes, "process", "processes"), extra=logs.SUMMARY)
    # What lives now (modules, the configuration, the store) is frozen while the workers live: no collection in
    # either process walks it, so its pages stay shared instead of being copied (a quarter fewer page faults,
    # the shares end 5-15 % sooner: docs/performance.md).
    gc.freeze()
    workers = [_fork(config, store, number, processes) for number in range(2, processes + 1)]
    listener = threading.Thread(target=_listen, args=(workers,), name="workers-log", daemon=True)
    listener.start()
    shown = 0

    def progress_all(files: int) -> None:
        nonlocal shown
        if progress:
            others = sum(w.done for w in workers)
            progress(files + others - shown)
            shown = others

    startup = Source.STARTUP
    try:
        mine = ((c, startup) for c in scan(config.hot, lambda name: share(name, processes) == 0))
        pipeline.process(mine, progress_all, summary)
    except BaseException:  # interrupted (SIGINT to this process alone), or failed: the workers stop too
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGINT)
        raise
    finally:
        listener.join()  # every worker's pipe closed: each one ended
        for w in workers:
            w.status = os.waitpid(w.pid, 0)[1]
        gc.unfreeze()
    progress_all(0)
    again = False
    for w in workers:
        if w.summary is not None:  # its last batch's count, if it died (what it finished after is recovered)
            _add(summary, w.summary)
        if w.status == 0:
            continue
        log.error("Worker process %d (pid %d) %s; its files are finished here", w.number, w.pid, _ended(w.status))
        pipeline.recover(summary, w.area)
        again = True
    if again:  # what a dead worker had not claimed yet waits in the hot folder
        pipeline.process(((c, startup) for c in scan(config.hot)), progress, summary)
    for area in worker_areas(pipeline.claims.area):
        Claims(config.hot, area, config.permissions.dir_mode).tidy()
    summary.seconds = time.perf_counter() - started  # the run's, not the sum of its processes'
    return summary


def _add(summary: Summary, other: Summary) -> None:
    summary.archived += other.archived
    summary.routed += other.routed
    summary.failed += other.failed
    summary.pending += other.pending
    summary.superseded += other.superseded
    summary.stopped = summary.stopped or other.stopped


def _ended(status: int | None) -> str:
    if status is not None and os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"stopped with status {os.waitstatus_to_exitcode(status) if status is not None else 'unknown'}"


def _listen(workers: list[_Worker]) -> None:
    """Relay the workers' log lines and progress until every pipe is closed (its process ended)."""
    from multiprocessing.connection import Connection, wait

    by_pipe = {w.pipe: w for w in workers}
    while by_pipe:
        for ready in wait(list(by_pipe)):
            pipe = cast(Connection, ready)
            w = by_pipe[pipe]
            try:
                kind, value = pipe.recv()
            except (EOFError, OSError):
                del by_pipe[pipe]
                pipe.close()
                continue
            if kind == "done":  # after each batch: its files, and what the worker finished so far
                files, so_far = value
                w.done += files
                w.summary = Summary(**so_far)
            else:
                relay(kind, value)


def relay(kind: str, value: Any) -> None:
    """A worker's console line ("show") or log record ("log"), given to this process's handlers."""
    if kind == "show":
        logs.show(*value)
    elif kind == "log":
        level, text, worker, summary_line = value
        log.log(level, "%s", text, extra={"worker": worker, "summary": summary_line})


def _fork(config: Config, store: Store, number: int, processes: int) -> _Worker:
    from multiprocessing.connection import Pipe

    reader, writer = Pipe(duplex=False)
    parent, area = os.getpid(), worker_area(config.claim_area, number)
    pid = os.fork()
    if pid == 0:  # the worker: it never returns
        reader.close()
        code = 1
        threading.current_thread().name = f"process-{number}"  # its own lines, apart from its threads'
        try:
            die_with(parent)
            log_through(writer)
            _work(config, store, number, processes, area, writer)
            code = 0
        except KeyboardInterrupt:  # Ctrl-C: the run says so once; what this worker claimed waits for the next
            code = 130
        except BaseException as e:
            log.error("Worker process %d stopped", number, exc_info=e)
        finally:
            logs.flush()
            os._exit(code)  # no exit handler of the parent's (its store, its log file) runs here
    writer.close()
    return _Worker(number, pid, reader, area)


def _work(config: Config, parent_store: Store, number: int, processes: int, area: Path, pipe: Connection) -> None:
    """A worker process's life: its own store connection and pipeline over its share, then its summary."""
    store = open_store(config, "pipeline")
    if (fence := getattr(parent_store, "fence", None)) is not None:  # a fleet's: taken over, the workers stop too
        store.fence = fence  # type: ignore[attr-defined]
    first = (number - 1) * config.workers + 1  # its threads' names follow those of the processes before it
    pipeline = Pipeline(config, store, area=area, first_worker=first)
    startup, summary = Source.STARTUP, Summary()

    def done(files: int) -> None:
        pipe.send(("done", (files, dataclasses.asdict(summary))))

    try:
        mine = ((c, startup) for c in scan(config.hot, lambda name: share(name, processes) == number - 1))
        pipeline.process(mine, done, summary)
    finally:
        pipeline.close()
        store.close()
    done(0)


def die_with(parent: int) -> None:
    """Be killed when the parent dies: a run is one unit, and the next one recovers every area it left."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before that was set
        os._exit(1)


class _PipeHandler(logging.Handler):
    """A worker's log records, sent to the parent as text (the parent's handlers format and write them)."""

    def __init__(self, pipe: Connection):
        super().__init__()
        self.pipe = pipe

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        worker = str(getattr(record, "worker", record.threadName))
        send(self.pipe, ("log", (record.levelno, text, worker, logs.summary(record))))


def log_through(pipe: Connection, following: logs.Following | None = None) -> None:
    """The worker writes the log file itself and sends its console lines to the parent; with no log file set
    up (a test's or a bench's handlers), it sends every record to the parent's handlers. `following`: how the
    parent logs (logs.following), for a worker that did not inherit its handlers."""
    logs.for_worker_process(lambda line, always: send(pipe, ("show", (line, always))), _PipeHandler(pipe), following)


def send(pipe: Connection, message: tuple[str, Any]) -> None:
    try:
        pipe.send(message)
    except OSError:  # the parent is gone (and this process with it, soon): the journal, not the log, matters
        pass
