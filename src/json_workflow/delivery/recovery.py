"""Crash recovery: finish what a crash left in the claim area, from the journal's record of each copy.

A claimed file whose copies were all staged (written and flushed) is published now: a temporary that
still exists was not renamed into place, one that is gone was (a downstream tool may have taken it
since) and is not delivered again. Anything less than staged is written again from the claim.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from json_workflow.config import CLAIM_AREA
from json_workflow.delivery import stages
from json_workflow.delivery.failed import REASON_SUFFIX
from json_workflow.delivery.flush import Barrier
from json_workflow.delivery.model import Copy, Kind, Outcome, remove_temporaries
from json_workflow.errors import Rejected
from json_workflow.intake.claim import Claims
from json_workflow.intake.scan import Candidate
from json_workflow.logs import log
from json_workflow.parse import parse_job
from json_workflow.plural import count
from json_workflow.routing.route import Router
from json_workflow.store import Store
from json_workflow.store.rows import FinishedFile


@dataclass
class Recovered:
    """What recovery finished, and the claimed files to process afresh with how often each was restarted."""

    archived: int = 0
    routed: int = 0
    failed: int = 0
    fresh: list[tuple[Candidate, int]] = field(default_factory=list)
    superseded: list[Candidate] = field(default_factory=list)  # a newer file of its name is in the hot folder


def recover(
    claims: Claims, journal: Store, barrier: Barrier, now: float, router: Router, adopt: Claims | None = None
) -> Recovered:
    """Finish what a crash left claimed; each file to process afresh comes with the number of times its
    processing began alone after a crash (see Store.restart).

    `claims` is this instance's claim area, or (`adopt` given: this instance's) a dead instance's, whose
    files to process afresh are moved into `adopt` first.
    """
    recovered = Recovered()
    for candidate in claims.leftovers():
        staged, copies = _journaled(journal, candidate.path)
        if staged:
            _finish_staged(claims, journal, barrier, candidate, copies, recovered, now, router)
            continue
        remove_temporaries(copies)  # planned, maybe half written: start again from the claim
        restarts = journal.restarts(candidate.path)
        if adopt is not None:
            moved = adopt.adopt(candidate)
            if moved is None:  # another instance took it first
                continue
            journal.adopt(candidate.path, moved.path)
            candidate = moved
        if os.path.lexists(candidate.origin):  # delivered now, it would come before a newer version: judged
            recovered.superseded.append(candidate)
        else:
            recovered.fresh.append((candidate, restarts))
    mine, fleets = str(claims.area) + os.sep, str(claims.hot / CLAIM_AREA) + os.sep
    for claim in journal.claims():
        if (claim.startswith(fleets) and not claim.startswith(mine)) or os.path.lexists(claim):
            continue  # another instance's (its own recovery, or a takeover, finishes it), or still there
        # The claim left before the crash: removed when finished, or moved into the archive as the
        # last rename of its publication. A staged copy the disk had not renamed yet is renamed now.
        staged, copies = _journaled(journal, claim)
        if staged:
            candidate = claims.candidate(claim) or Candidate(claim, None)  # named CLIENT/name, as everywhere
            _finish_staged(claims, journal, barrier, candidate, copies, recovered, now, router)
        else:
            remove_temporaries(copies)
            journal.forget([claim])
    return recovered


def _journaled(journal: Store, claim: str) -> tuple[bool, list[Copy]]:
    """The claim's copies from the journal, and whether all of them were staged (written and flushed)."""
    entries = journal.entries(claim)
    staged = bool(entries) and all(e.state == "staged" for e in entries)
    return staged, [Copy(e.temp, e.final, Kind(e.kind)) for e in entries]


def _finish_staged(
    claims: Claims,
    journal: Store,
    barrier: Barrier,
    candidate: Candidate,
    copies: list[Copy],
    recovered: Recovered,
    now: float,
    router: Router,
) -> None:
    """Publish a staged file's remaining copies and release its claim, as its batch would have."""
    waiting = sum(os.path.lexists(c.temp) for c in copies)
    stages.publish(copies, barrier, resume=True)
    barrier.flush()
    claims.release(candidate)
    with contextlib.suppress(FileNotFoundError):  # the claim's folder, unless a crash took it too
        barrier.add(os.path.dirname(candidate.path))
    barrier.flush()  # the claim's removal before the journal forgets it
    failed_as = next((c.final for c in copies if c.kind == Kind.FAILED), None)
    failed = failed_as is not None
    facts = _facts(router, candidate, copies, failed_as)
    journal.finish_recovered(candidate.path, Outcome.FAILED if failed else Outcome.ARCHIVED, now, failed_as, facts)
    recovered.failed += failed
    recovered.archived += not failed
    recovered.routed += any(c.kind in _ROUTED for c in copies) and not failed
    log.info(
        "[RECOVERY] Finished %s after a crash: %d of %s published now, the rest were already",
        candidate.display,
        waiting,
        count(len(copies), "copy"),
    )


_ROUTED = (Kind.COPY, Kind.SEND)  # a copy to a folder (its final name), or to a URL (its URL as shown)


def _facts(router: Router, candidate: Candidate, copies: list[Copy], failed_as: str | None) -> FinishedFile | None:
    """What the file's statistics row would have said, had its batch finished: its job's facts, each copy's rule
    (routed again: the journal keeps folders, not rules), or the failure's stage and reason (its reason file)."""
    if failed_as is not None:
        fields = dict(line.partition(": ")[::2] for line in _text(failed_as + REASON_SUFFIX).splitlines())
        return FinishedFile(0, "failed", 0.0, stage=fields.get("stage"), reason=fields.get("reason"))
    # The claim, or where it went: the archive (moved), or one of its copies (a consumer may have taken some).
    for path in (candidate.path, *(c.final for c in copies if c.kind in (Kind.MOVE, Kind.COPY))):
        try:
            with open(path, "rb") as f:
                job = parse_job(f.read(), candidate.folder)
            plan = {d.shown: d.reasons for d in router.plan(job) if not d.is_archive}
        except (OSError, Rejected):
            continue
        folders = [os.path.dirname(c.final) if c.kind == Kind.COPY else c.final for c in copies if c.kind in _ROUTED]
        routed = [(rule, folder) for folder in folders for rule in plan.get(folder, ("?",))]
        return FinishedFile(
            0, "archived", 0.0, job.client, job.category, job.studio, job.title, routed=routed, job=job.number
        )
    return None


def _text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
