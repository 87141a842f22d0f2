"""A worker process of the service (delivery.shared): its own pipeline over the files the service hands it.

Started as `python -m json_workflow.delivery.worker_process FD`, FD its end of a socket pair: the first
message says how to work (the configuration, its number, the fleet's epoch, how the service logs),
each next one is a command, answered with the deliveries it finished, as plain values.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from json_workflow import logs
from json_workflow.delivery.model import Delivery, Summary
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.delivery.processes import die_with, log_through, send
from json_workflow.intake.claim import worker_area
from json_workflow.intake.scan import Candidate
from json_workflow.logs import log
from json_workflow.parse import Job
from json_workflow.routing.route import Destination

# What the service needs of a delivery a worker finished (its counts, its log of what waits), as plain values:
# pickling the dataclasses themselves cost the two processes more than a third of a file's work.
Packed = tuple[Any, ...]


def packed(d: Delivery) -> Packed:
    c = d.candidate
    client = d.job.client if d.job is not None else None
    destinations = tuple((x.path, x.reasons) for x in d.destinations)
    flags = (d.left_claimed, d.vanished, d.superseded, d.moved)
    return (c.path, c.folder, c.symlink, c.name, c.origin, d.source, client, destinations, d.rejection, d.failed_as,
            d.waiting_on, flags, d.seconds, d.row, d.worker, d.sent)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _destinations(destinations: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[Destination, ...]:
    """The same few destinations come back with file after file: each made once."""
    return tuple(Destination(Path(path), reasons, path) for path, reasons in destinations)


@functools.lru_cache(maxsize=4096)
def _job(client: str) -> Job:
    """A job as the service's counts know it: by its client."""
    return Job(client, "", None, None, {})


def unpacked(p: Packed) -> Delivery:
    path, folder, link, name, origin, source, client, destinations, rejection, failed_as, waiting, flags, *rest = p
    seconds, row, worker, sent = rest
    left_claimed, vanished, superseded, moved = flags
    return Delivery(
        Candidate(path, folder, link, name, origin),
        source,
        None if client is None else _job(client),
        _destinations(destinations),
        rejection=rejection,
        failed_as=failed_as,
        waiting_on=waiting,
        left_claimed=left_claimed,
        vanished=vanished,
        superseded=superseded,
        moved=moved,
        seconds=seconds,
        row=row,
        worker=worker,
        sent=sent,
    )


# A terminal's Ctrl-C and systemd's SIGTERM reach the whole group: the service stops its workers once drained.
_STOPS = {signal.SIGINT, signal.SIGTERM}


def start_worker(fd: int) -> subprocess.Popen[bytes]:
    """A worker process on its end `fd` of a socket pair; it starts with the stop signals blocked, which it
    ignores before it takes them again: one that comes while it imports cannot end it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)  # this thread's only: the service's others take them meanwhile
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "json_workflow.delivery.worker_process", str(fd)],
            pass_fds=[fd],
            start_new_session=True,  # a terminal's Ctrl-C is the service's to handle: it stops its workers
        )
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)


# --- in the worker process -------------------------------------------------------------------------
def serve(pipe: Connection) -> None:
    """A worker process's life: its pipeline over what the service hands it, until told to close."""
    from json_workflow.store import open_store

    for stop in _STOPS:
        signal.signal(stop, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # blocked since it started (start_worker)
    kind, (config, number, parent, epoch, following) = pipe.recv()
    die_with(parent)
    threading.current_thread().name = f"process-{number}"
    log_through(pipe, following)
    store = open_store(config, f"pipeline-{number}")
    if epoch is not None:  # a fleet's: what it plans and publishes is checked against the service's lease
        from json_workflow.store.fleet import Fence

        fence = Fence()
        fence.epoch = epoch
        fence.held.set()
        store.fence = fence  # type: ignore[attr-defined]
    area = worker_area(config.claim_area, number)
    pipeline = Pipeline(config, store, area=area, first_worker=(number - 1) * config.workers + 1)
    pipeline.vanished, summary = [], Summary()
    try:
        while True:
            try:
                kind, value = pipe.recv()
            except (EOFError, OSError):  # the service is gone: so is this process (PR_SET_PDEATHSIG), at once
                os._exit(1)
            done: list[Delivery] = []
            if kind == "submit":
                done = pipeline.submit([(Candidate(p, f, link), source) for p, f, link, source in value], summary)
            elif kind in ("drain", "close"):
                done = pipeline.drain(summary)
            elif kind == "reconfigure":
                done = pipeline.drain(summary)
                pipeline.reconfigure(value)
            elif kind == "forget_trouble":
                pipeline.forget_trouble()
            elif kind == "forget_folders":
                pipeline.forget_folders()
            logs.flush()
            gone, pipeline.vanished = pipeline.vanished, []
            send(pipe, ("done", ([packed(d) for d in done], gone)))
            if kind == "close":
                return
    finally:
        pipeline.close()
        pipeline.claims.tidy()
        store.close()
        logs.flush()


if __name__ == "__main__":
    try:
        serve(Connection(int(sys.argv[1])))
    except Exception:  # the service says it ended, and recovers its claims; the log says why
        log.exception("Worker process stopped")
        logs.flush()
        sys.exit(1)
