"""The service's pipeline over several processes: its files shared by name among worker processes.

A service has threads (feeds, dashboard, reporter, lease), so its workers are started afresh (`python -m
json_workflow.delivery.worker_process`), never forked. They start when a backlog reaches SHARED_FROM files and
stay until the service stops. The service keeps the intake, the counts and the log of what waits; each worker
is a whole pipeline (its own claim area `.process-N`, its own store connection) over the names whose share is
its own, so every version of a name goes through one process, in order. Each command sent to a worker gets
one answer: the deliveries it finished.

A worker that dies is found at the next command: its claim area is recovered here, what it had been
handed and had not claimed is handed on again, and its share is processed here until it starts again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from os.path import lexists
from pathlib import Path
from typing import Any

from json_workflow import logs
from json_workflow.config import Config
from json_workflow.delivery.model import Delivery, Summary
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.delivery.processes import SHARED_FROM, backlog_reaches, batch_files, relay, share
from json_workflow.delivery.worker_process import Packed, start_worker, unpacked
from json_workflow.intake import Source
from json_workflow.intake.claim import worker_area
from json_workflow.intake.scan import Candidate, candidate_at
from json_workflow.logs import log
from json_workflow.plural import count
from json_workflow.store import Store

# How long a worker that died waits before it is started again (its share is processed here meanwhile).
RESTART_SECONDS = 10.0
# How long a stopping service waits for a worker to finish its batches in flight and exit.
STOP_SECONDS = 30.0
# Batches handed to a worker and not answered yet, at most: an answer reaches the main loop through two threads (ms
# of GIL hand-offs while the intake is busy); with 3 ahead a worker waited a fifth of a burst for its next batch.
IN_FLIGHT = 12
# Files waiting here for one worker, at most, before the intake waits for it (the others go on meanwhile).
WAITING_AT_MOST = 2_000
# A worker with commands unanswered this long is said to hang (a destination on a hung mount, a stopped process).
HUNG_SECONDS = 60.0


@dataclasses.dataclass
class _Worker:
    """A worker process as the service sees it: its pipe, the files handed to it and not yet back."""

    number: int
    area: Path
    process: subprocess.Popen[bytes] | None = None
    pipe: Connection | None = None
    asked: int = 0  # commands not answered yet
    busy: bool = False  # handed files since it was last asked to finish what it holds
    waiting: list[tuple[Candidate, Source]] = dataclasses.field(default_factory=list)  # its files, not handed yet
    handed: dict[str, tuple[Candidate, Source]] = dataclasses.field(default_factory=dict)  # origin -> what
    start_at: float = float("inf")  # when to start it (again); inf: not wanted yet
    answered: float = 0.0  # monotonic: its last answer (or start)
    hung: bool = False  # said to have not answered for HUNG_SECONDS

    @property
    def running(self) -> bool:
        return self.pipe is not None


# An answer: the worker, the pipe it came through (a worker started again has another), its deliveries
# (None: the pipe closed, the process ended).
_Answer = tuple[_Worker, Connection, "tuple[list[Packed], list[str]] | None"]


def service_pipeline(config: Config, store: Store, wake: Callable[[], None]) -> Pipeline | SharedPipeline:
    """A service's pipeline: its files shared among worker processes where it may use more than one core."""
    processes = config.process_count
    if processes > 1 and not any(rule.endpoint for rule in config.routes):  # a URL's files come back: to this one
        return SharedPipeline(config, store, processes, wake)
    return Pipeline(config, store, wake=wake)


class SharedPipeline:
    """The Pipeline interface the service uses, over `processes` worker processes (and this one's, until they
    start, and for a dead one's share until it starts again)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        processes: int,
        wake: Callable[[], None] = lambda: None,
        pipeline: Pipeline | None = None,
    ):
        """`wake`: called when a worker answers (the service's main loop takes its deliveries)."""
        self.local, self.wake = pipeline or Pipeline(config, store), wake
        self.config, self.store, self.processes = config, store, processes
        self.claims = self.local.claims
        # Numbered from 2 (this process is the first): their claim areas and thread names are those of run --once's.
        self.workers = [_Worker(n, worker_area(config.claim_area, n)) for n in range(2, processes + 2)]
        self.answers: queue.Queue[_Answer] = queue.Queue()
        self.ready = 0  # files ready in the service (expect): with those waiting here, how large a batch is handed
        if backlog_reaches(config.hot, SHARED_FROM):  # the startup scan's
            self.expect(SHARED_FROM)

    # --- the Pipeline interface ---------------------------------------------------------------------
    def expect(self, files: int) -> None:
        """`files` wait to be processed: a backlog of SHARED_FROM or more starts the worker processes."""
        self.ready = files
        if files >= SHARED_FROM:
            for w in self.workers:
                if not w.running and w.start_at == float("inf"):
                    w.start_at = 0.0

    def submit(self, batch: list[tuple[Candidate, Source]], summary: Summary) -> list[Delivery]:
        done = self._start_due(summary)
        self._say_hung()
        mine: list[tuple[Candidate, Source]] = []
        for item in batch:
            w = self.workers[share(item[0].name, self.processes)]
            (w.waiting if w.running else mine).append(item)
        if mine:
            done += self.local.submit(mine, summary)
        size = self._batch()  # more files are taken while any worker has less than a batch waiting here
        done += self._until(self.answers.empty, summary)
        return done + self._hand(summary, lambda w: w.running and len(w.waiting) >= size)

    def idle(self, summary: Summary) -> list[Delivery]:
        """Nothing more to take now: hand what fits, ask each worker to finish what it holds (its answer wakes
        the service), finish the batches of this process."""
        self._say_hung()
        done = self._until(self.answers.empty, summary) + self._hand(summary, lambda w: False)
        for w in self.workers:
            if w.running and w.busy and not w.waiting:
                self._send(w, ("drain", None))
                w.busy = False
        return done + self.local.idle(summary)

    def drain(self, summary: Summary) -> list[Delivery]:
        done = self._hand(summary, lambda w: w.running and bool(w.waiting))
        self._broadcast(("drain", None))
        done += self.local.drain(summary)
        return done + self._until(lambda: not any(w.asked for w in self.workers), summary)

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self._broadcast(("reconfigure", config))
        self.local.reconfigure(config)

    def forget_trouble(self) -> None:
        self._broadcast(("forget_trouble", None))
        self.local.forget_trouble()

    def forget_folders(self) -> None:
        self._broadcast(("forget_folders", None))
        self.local.forget_folders()

    def recover(self, summary: Summary, area: Path | None = None) -> list[Delivery]:
        return self.local.recover(summary, area)

    def width(self) -> int:
        return max(1, sum(w.running for w in self.workers))

    def claimed(self) -> int:
        return self.local.claimed() + sum(len(w.handed) + len(w.waiting) for w in self.workers)

    def close(self) -> None:
        """Stop the workers once their batches in flight are finished (a stopping service drained them)."""
        self._broadcast(("close", None))
        deadline = time.monotonic() + STOP_SECONDS
        for w in self.workers:
            if w.process is not None:
                try:
                    w.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:  # what it holds is journaled: the next start finishes it
                    log.error("Worker process %d did not stop within %gs; it is killed", w.number, STOP_SECONDS)
                    w.process.kill()
                    w.process.wait()
        self.local.close()

    # --- the workers -------------------------------------------------------------------------------
    def _start_due(self, summary: Summary) -> list[Delivery]:
        """Start the workers that are due; what this process holds of their shares is finished first."""
        now = time.monotonic()
        due = [w for w in self.workers if not w.running and w.start_at <= now]
        if not due:
            return []
        done = self.local.drain(summary)  # no version of a name may be in flight in two processes
        for w in due:
            self._start(w)
        return done

    def _start(self, w: _Worker) -> None:
        ours, theirs = socket.socketpair()
        fence = getattr(self.store, "fence", None)
        setup = (self.config, w.number, os.getpid(), getattr(fence, "epoch", None), logs.following())
        try:
            w.process = start_worker(theirs.fileno())
        except OSError as e:  # no memory, no process slot: its share is processed here meanwhile
            ours.close()
            w.start_at = time.monotonic() + RESTART_SECONDS
            log.error("Cannot start worker process %d, trying again in %gs: %s", w.number, RESTART_SECONDS, e)
            return
        finally:
            theirs.close()
        w.pipe, w.asked, w.start_at, w.answered = Connection(ours.detach()), 0, float("inf"), time.monotonic()
        threading.Thread(target=self._listen, args=(w, w.pipe), name=f"process-{w.number}-pipe", daemon=True).start()
        with contextlib.suppress(OSError):  # dead already: its listener says so
            w.pipe.send(("setup", setup))  # not a command: no answer
        log.info("Started worker process %d (pid %d) for a share of the files", w.number, w.process.pid)

    def _listen(self, w: _Worker, pipe: Connection) -> None:
        """Relay a worker's log lines; queue its answers, then None once its pipe is closed (it ended)."""
        while True:
            try:
                kind, value = pipe.recv()
            except (EOFError, OSError):
                self.answers.put((w, pipe, None))
                self.wake()
                return
            if kind == "done":
                self.answers.put((w, pipe, value))
                self.wake()
            else:
                relay(kind, value)

    def _send(self, w: _Worker, message: tuple[str, Any]) -> None:
        """A command; its answer comes through the listener (None, if the worker is dead)."""
        assert w.pipe is not None
        if not w.asked:  # its silence is counted from its first unanswered command
            w.answered = time.monotonic()
        w.asked += 1
        try:
            w.pipe.send(message)
        except OSError:  # dead: its listener says so
            pass

    def _broadcast(self, message: tuple[str, Any]) -> None:
        for w in self.workers:
            if w.running:
                self._send(w, message)

    def _hand(self, summary: Summary, full: Callable[[_Worker], bool]) -> list[Delivery]:
        """Hand each worker its files, a batch at a time while it has fewer than IN_FLIGHT; wait for answers
        while every worker is `full` (or one has WAITING_AT_MOST files waiting here)."""
        size, done = self._batch(), list[Delivery]()
        while True:
            for w in self.workers:
                while w.running and w.waiting and w.asked < IN_FLIGHT:
                    batch, w.waiting = w.waiting[:size], w.waiting[size:]
                    w.handed.update((item[0].origin, item) for item in batch)
                    self._send(w, ("submit", [(c.path, c.folder, c.symlink, source) for c, source in batch]))
                    w.busy = True
            running = [w for w in self.workers if w.running]
            if not running or not (all(map(full, running)) or any(len(w.waiting) >= WAITING_AT_MOST for w in running)):
                return done
            done += self._take(summary)

    def _batch(self) -> int:  # files per batch handed to a worker: larger while a backlog waits, here or there
        return batch_files(self.config.batch_size, self.ready + sum(len(w.waiting) for w in self.workers))

    def _until(self, condition: Callable[[], bool], summary: Summary) -> list[Delivery]:
        """Take answers until `condition` holds."""
        done: list[Delivery] = []
        while not condition():
            done += self._take(summary)
        return done

    def _take(self, summary: Summary) -> list[Delivery]:
        """One answer (waiting for it): its deliveries, or those of a dead worker's files, finished here."""
        while True:
            try:
                w, pipe, answer = self.answers.get(timeout=HUNG_SECONDS / 4)
                break
            except queue.Empty:
                self._say_hung()
        if pipe is not w.pipe:  # of a process that ended before
            return []
        if answer is None:
            return self._ended(w, summary)
        packed, gone = answer
        w.asked -= 1
        if w.hung:
            w.hung = False
            log.warning("Worker process %d answers again", w.number)
        w.answered = time.monotonic()
        done = [unpacked(p) for p in packed]
        for origin in [d.candidate.origin for d in done] + gone:  # gone: claimed meanwhile (a scan's twin)
            w.handed.pop(origin, None)
        return done

    def _say_hung(self) -> None:
        """Say once which worker has not answered for HUNG_SECONDS (its files wait, and maybe the service)."""
        now = time.monotonic()
        for w in self.workers:
            if w.running and w.asked and not w.hung and now - w.answered > HUNG_SECONDS:
                w.hung = True
                how = f"(pid {w.process.pid if w.process else '?'}) has not answered for {HUNG_SECONDS:g}s"
                log.error("Worker process %d %s (a hung destination or mount?); the files of its share wait, and "
                          "once %d do, every file does", w.number, how, WAITING_AT_MOST)  # fmt: skip

    def _ended(self, w: _Worker, summary: Summary) -> list[Delivery]:
        """A worker died: its claims are finished here, what it had not claimed is processed here too."""
        assert w.process is not None and w.pipe is not None
        status = w.process.wait()
        w.pipe.close()
        w.pipe, w.asked, w.start_at = None, 0, time.monotonic() + RESTART_SECONDS
        how = f"was killed by signal {-status}" if status < 0 else f"stopped with status {status}"
        with contextlib.suppress(ValueError):
            how = f"was killed by {signal.Signals(-status).name}" if status < 0 else how
        log.error("Worker process %d (pid %d) %s; its files are finished here, it starts again in %gs",
                  w.number, w.process.pid, how, RESTART_SECONDS)  # fmt: skip
        done = self.local.drain(summary) + self.local.recover(summary, w.area)
        handed, w.handed, w.waiting = list(w.handed.values()) + w.waiting, {}, []
        again = [(candidate_at(self.config.hot, c.origin), source) for c, source in handed if lexists(c.origin)]
        if again:
            log.info("Processing here the %s handed to it", count(len(again), "file"))
            done += self.local.submit(again, summary) + self.local.drain(summary)
        return done
