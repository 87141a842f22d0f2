"""Preparing one file: claim, read, parse, route, and decide its copies. Only this file is at stake."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from json_workflow import durable
from json_workflow.config import Config
from json_workflow.delivery import stages
from json_workflow.delivery.flush import Barrier
from json_workflow.delivery.folders import Folders
from json_workflow.delivery.model import Delivery
from json_workflow.errors import DestinationError, Rejected, StillWriting, WorkflowError, detached
from json_workflow.intake import Source
from json_workflow.intake.claim import Claims
from json_workflow.intake.scan import Candidate, read_job_file
from json_workflow.logs import log
from json_workflow.parse import parse_job
from json_workflow.routing.route import Router


@dataclass
class Parts:
    """What preparing a file needs; the pipeline owns them and replaces them on reload."""

    config: Config
    claims: Claims
    router: Router
    folders: Folders
    barrier: Barrier
    # Files to fail without reading them again (hot-folder path -> why): an error no one foresaw
    # while writing them, or a file that a crash interrupted again and again.
    poisoned: dict[str, Rejected] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keep_document = self.config.dotted_fields  # decided once per configuration, not per file


def prepare_delivery(
    candidate: Candidate, source: Source, parts: Parts, now: float
) -> tuple[Delivery, DestinationError | None]:
    """The file's delivery, claimed and decided, and new destination trouble to report, if any."""
    d = Delivery(candidate, source=source, started=time.perf_counter(), worker=threading.current_thread().name)
    if not candidate.claimed:
        claimed = _claim(parts.claims, candidate, source)
        if claimed is None:
            d.vanished = True  # taken between the scan and now, or it cannot be claimed: it stays where it is
            return d, None
        d.candidate = candidate = claimed
        parts.barrier.add(durable.parent(candidate.origin))
    parts.barrier.add(durable.parent(candidate.path))
    try:
        _decide(d, parts, now)
    except Rejected as rejection:
        d.rejection, d.data = detached(rejection), None
    except StillWriting as e:
        log.info("[%s] %s is still being written (%s); it waits until it is complete", source, candidate.display, e)
        d.waiting_on = detached(e)
        return d, None
    except OSError as e:
        log.error("[%s] Cannot read %s, it waits for the next run: %s", source, candidate.display, e)
        d.waiting_on = DestinationError(candidate.origin, e)
        return d, None
    except Exception as e:  # an input no one foresaw must cost this file, never the run
        d.rejection, d.data = unforeseen(d, e, "parse"), None
    try:
        return d, stages.prepare(d, parts.folders, now)
    except Exception as e:
        log.exception("[%s] Cannot decide the copies of %s; it waits in the hot folder", source, candidate.display)
        d.waiting_on, d.copies = detached(WorkflowError(f"cannot decide its copies: {e}")), []
        return d, None


def _claim(claims: Claims, candidate: Candidate, source: Source) -> Candidate | None:
    try:
        return claims.claim(candidate)
    except (OSError, WorkflowError) as e:
        log.error("[%s] Cannot claim %s, it stays in the hot folder: %s", source, candidate.display, e)
        return None


def _decide(d: Delivery, parts: Parts, now: float) -> None:
    """Read, parse and route a claimed file; raises what keeps it from going out now."""
    candidate, config = d.candidate, parts.config
    if (known := parts.poisoned.pop(candidate.origin, None)) is not None:
        raise known
    if candidate.symlink:
        raise Rejected("symlink: links are never followed", "intake")
    read = read_job_file(candidate.path, config.max_file_bytes, config.permissions.file_mode)
    d.data, d.info = read.data, read.info
    try:
        job = parse_job(read.data, candidate.folder, parts.keep_document)
    except Rejected:
        # Unparsable while a writer we cannot see (another host, another user's file) may still be at it.
        if not read.closed and read.young(config.stable_seconds, now):
            raise StillWriting("unreadable as a job file and modified within stable_seconds") from None
        raise
    d.job = parts.folders.with_client_folder(job, candidate.folder is None)
    d.destinations = parts.router.plan(d.job)
    if parts.router.skips:
        d.skipped = parts.router.skipped(d.job)


def unforeseen(d: Delivery, error: Exception, stage: str) -> Rejected:
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
