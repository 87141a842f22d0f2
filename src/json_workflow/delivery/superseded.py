"""A waiting file that finds a newer file of its name in its place when it goes back to the hot folder.

Delivering it later would overwrite the newer one, so it never goes back. When its bytes are the newer
file's, it is the same job written again (a writer that opens and writes a file several times per
copy): it is dropped, with one INFO line, and counted apart. Otherwise it is set aside in the failed
folder (superseded). A newer file still being written cannot be compared yet: the older version waits,
claimed, until that one is written (or taken in turn: then against its archived copy), a minute at
most. One still waiting when the run ends stays claimed, and so does one a crash interrupted: the
next start finds a newer file in its place (crash recovery) and judges it then.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from json_workflow import durable
from json_workflow.delivery import records, stages
from json_workflow.delivery.folders import Folders, folder_names
from json_workflow.delivery.model import Delivery, Summary
from json_workflow.errors import StoreError
from json_workflow.intake.claim import Claims
from json_workflow.intake.stability import open_for_writing
from json_workflow.logs import log
from json_workflow.store import Store
from json_workflow.store.rows import FinishedFile

DEFER_LIMIT = 60.0  # seconds a version waits for the newer one to be written before it is judged anyway
QUIET_SECONDS = 1.0  # a newer file unchanged this long, and open for writing by nobody, is written


class Superseded:
    """The versions of one pipeline that found a newer file in their place, and those still waiting to be judged."""

    def __init__(self, claims: Claims, store: Store, clock: Callable[[], float]):
        self.claims, self.store, self.clock = claims, store, clock
        self.waiting: list[tuple[Delivery, float]] = []

    def found(self, d: Delivery, summary: Summary, folders: Folders, alone: bool = False) -> None:
        """`d` could not go back: judged now, or once the newer file is written (kept claimed till then).

        `alone`: no batch records it (crash recovery found it): its row is closed here.
        """
        if _being_written(d.candidate.origin, folders.config.stable_seconds):
            d.left_claimed = True  # its batch leaves its row open and its claim in place
            self.waiting.append((d, time.monotonic()))
            summary.pending += 1
            return
        self._judge(d, summary, folders)
        if alone:
            self._record(d)

    def revisit(self, summary: Summary, folders: Folders) -> list[Delivery]:
        """Judge the versions kept back whose newer file is written now, or that waited long enough."""
        done, kept = [], []
        for d, since in self.waiting:
            late = time.monotonic() - since > DEFER_LIMIT
            if late or not _being_written(d.candidate.origin, folders.config.stable_seconds):
                summary.pending -= 1
                d.left_claimed = False
                self._judge(d, summary, folders)
                self._record(d)
                done.append(d)
            else:
                kept.append((d, since))
        self.waiting = kept
        return done

    def _judge(self, d: Delivery, summary: Summary, folders: Folders) -> None:
        newer = d.candidate.origin
        if not os.path.lexists(newer):  # taken in turn meanwhile: its archived copy is the newer version
            newer = _archived(folders, d.candidate.folder, d.candidate.name) or newer
        if durable.same_bytes(d.candidate.path, newer):
            self.claims.release(d.candidate)
            d.waiting_on, d.superseded = None, True
            summary.superseded += 1
            log.info(
                "[%s] %s was written again while it was taken (the same bytes): this version is dropped, the "
                "newer one is processed",
                d.source,
                d.candidate.display,
            )
            return
        why = f"superseded by a newer file of the same name while it waited ({d.waiting_on})"
        try:
            d.failed_as = stages.set_aside(d, folders, why, self.clock())
        except OSError as e:
            log.error("Cannot set aside %s, it stays in the claim area for the next start: %s", d.candidate.display, e)
            d.left_claimed = True
            summary.pending += 1
            return
        d.waiting_on = None  # it is failed now: counted and recorded as such
        self.claims.release(d.candidate)
        summary.failed += 1
        log.warning(
            "[%s] %s was superseded by a newer file of the same name while waiting -> %s",
            d.source,
            d.candidate.display,
            d.failed_as,
        )

    def _record(self, d: Delivery) -> None:
        """Close the row of a version judged after its batch, which left it open."""
        if d.superseded:
            stage, reason = "intake", records.SUPERSEDED_REASON
        elif d.rejection is not None and not d.left_claimed:
            stage, reason = d.rejection.stage, d.rejection.reason
        else:
            return
        outcome = str(d.outcome)
        try:
            facts = FinishedFile(0, outcome, 0.0, stage=stage, reason=reason)
            self.store.finish_recovered(d.candidate.path, outcome, self.clock(), d.failed_as, facts)
        except StoreError as e:  # figures only: the file itself is dealt with
            log.error("Cannot record %s as %s in the statistics: %s", d.candidate.display, outcome, e)


def _being_written(path: str, stable_seconds: float) -> bool:
    """Whether the file at `path` may still be being written: open for writing, or changed a moment ago."""
    writing = open_for_writing(path)
    try:
        age = time.time() - os.lstat(path).st_mtime
    except OSError:  # gone: taken in turn, or removed
        return False
    if writing is None:  # a writer the kernel cannot see (a share): only time tells
        return age < stable_seconds
    return writing or age < min(QUIET_SECONDS, stable_seconds)


def _archived(folders: Folders, client: str | None, name: str) -> str | None:
    """The archived copy of a client folder's file (the client spelt as the archive spells it), if there is one."""
    if client is not None:
        for spelling in folder_names(folders.config.archive):
            path = os.path.join(folders.config.archive, spelling, name)
            if spelling.casefold() == client.casefold() and os.path.lexists(path):
                return path
    return None
