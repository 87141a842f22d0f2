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
from json_workflow.delivery import durable, stages
from json_workflow.delivery.model import Copy, Kind, Outcome, remove_temporaries
from json_workflow.intake.claim import Claims
from json_workflow.intake.scan import Candidate
from json_workflow.logs import log
from json_workflow.store import Store


@dataclass
class Recovered:
    """What recovery finished, and the claimed files to process afresh with how often each was restarted."""

    archived: int = 0
    failed: int = 0
    fresh: list[tuple[Candidate, int]] = field(default_factory=list)


def recover(
    claims: Claims, journal: Store, barrier: durable.Barrier, now: float, adopt: Claims | None = None
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
            _finish_staged(claims, journal, barrier, candidate, copies, recovered, now)
            continue
        remove_temporaries(copies)  # planned, maybe half written: start again from the claim
        restarts = journal.restarts(candidate.path)
        if adopt is not None:
            moved = adopt.adopt(candidate)
            if moved is None:  # another instance took it first
                continue
            journal.adopt(candidate.path, moved.path)
            candidate = moved
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
            _finish_staged(claims, journal, barrier, candidate, copies, recovered, now)
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
    barrier: durable.Barrier,
    candidate: Candidate,
    copies: list[Copy],
    recovered: Recovered,
    now: float,
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
    journal.finish_recovered(candidate.path, Outcome.FAILED if failed else Outcome.ARCHIVED, now, failed_as)
    recovered.failed += failed
    recovered.archived += not failed
    log.info(
        "[RECOVERY] Finished %s after a crash: %d of %d copies published now, the rest were already",
        candidate.display,
        waiting,
        len(copies),
    )
