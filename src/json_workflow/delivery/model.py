"""What one claimed file is on its way through the pipeline: its source, its copies, its outcome."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum

from json_workflow import durable
from json_workflow.errors import Rejected, WorkflowError
from json_workflow.intake import Source
from json_workflow.intake.scan import Candidate
from json_workflow.parse import Job
from json_workflow.plural import count
from json_workflow.routing.route import Destination


class Kind(StrEnum):
    """What a planned copy is; the journal records it, so recovery knows how to publish it."""

    COPY = "copy"  # the file's bytes written to a destination
    MOVE = "move"  # the claimed original itself, renamed into the archive
    FAILED = "failed"  # the file set aside in the failed folder
    REASON = "reason"  # the reason file beside it
    SEND = "send"  # the file's bytes sent to a URL: `temp` is its idempotency key, `final` the URL as shown


class Outcome(StrEnum):
    """Where a file ended up; the first three are the statistics' `outcome` values."""

    ARCHIVED = "archived"
    FAILED = "failed"
    PENDING = "pending"  # back in the hot folder, waiting for its destination, its writer or the journal
    SUPERSEDED = "superseded"  # written again with the same bytes while it was taken: the newer one goes on
    LEFT_CLAIMED = "left claimed"  # partly published: the journal finishes it at the next start
    VANISHED = "vanished"  # gone from the claim area before it could be set aside (someone removed it)


# Outcomes as module names for `Delivery.outcome`, decoded for every file: on Python 3.11 an Enum
# member's lookup goes through EnumType.__getattr__ and costs five times a global's.
_ARCHIVED, _FAILED, _PENDING = Outcome.ARCHIVED, Outcome.FAILED, Outcome.PENDING
_LEFT_CLAIMED, _VANISHED, _SUPERSEDED = Outcome.LEFT_CLAIMED, Outcome.VANISHED, Outcome.SUPERSEDED


@dataclass(frozen=True, slots=True)
class Copy:
    """One file to publish: a hidden temporary and its final name.

    A move's temporary is the claimed original itself: it is never removed, only renamed into place.
    """

    temp: str
    final: str
    kind: Kind = Kind.COPY

    @property
    def ours(self) -> bool:
        """True when the temporary was written for this copy (and is removed when the copy is dropped)."""
        return self.kind != Kind.MOVE and self.kind != Kind.SEND


@dataclass
class Delivery:
    """What happens to one claimed file: its copies, or its place in the failed folder, or why it waits."""

    candidate: Candidate
    source: Source = Source.STARTUP
    job: Job | None = None
    destinations: tuple[Destination, ...] = ()
    skipped: tuple[str, ...] = ()  # rules that match but leave out their copy (on_missing = "skip"), and why
    rejection: Rejected | None = None
    data: bytes | None = None
    info: os.stat_result | None = None  # the claimed file's, from when it was read
    copies: list[Copy] = field(default_factory=list)
    failed_as: str | None = None
    waiting_on: WorkflowError | None = None  # why it waits: its destination, its writer, the journal
    left_claimed: bool = False  # partly published: the journal finishes it at the next start
    moved: bool = False  # the claimed original itself became the archived file
    vanished: bool = False
    superseded: bool = False  # dropped: a newer file of its name in the hot folder holds the same bytes
    started: float = 0.0
    worker: str = ""
    seconds: float = 0.0  # processing time, set when it is finished
    row: int | None = None  # its row in the statistics
    sent: list[tuple[str, float]] = field(default_factory=list)  # (rule, seconds) of each request to a URL

    @property
    def outcome(self) -> Outcome:
        """The one outcome its flags add up to (a rejected file that cannot be set aside yet waits)."""
        if self.vanished:
            return _VANISHED
        if self.left_claimed:
            return _LEFT_CLAIMED
        if self.waiting_on is not None:
            return _PENDING
        if self.superseded:
            return _SUPERSEDED
        if self.rejection is not None:
            return _FAILED
        return _ARCHIVED

    def discard(self) -> None:
        """Remove every temporary written for this file (it goes back to waiting)."""
        remove_temporaries(self.copies)
        self.copies = []


def remove_temporaries(copies: list[Copy]) -> None:
    """Remove the temporaries written for `copies`; a move's (the claimed original) is left alone."""
    for c in copies:
        if c.ours:
            durable.remove_quietly(c.temp)


@dataclass(frozen=True)
class Answer:
    """What became of one request: `sent` (2xx); else `retry` (the endpoint's trouble: the file waits, at
    least `after` seconds when the endpoint said so) or refused (the file fails), with the reason."""

    sent: bool
    status: int | None = None
    retry: bool = False
    reason: str = ""
    after: float | None = None


@dataclass
class Summary:
    """What a run did, counted per file."""

    archived: int = 0
    routed: int = 0
    failed: int = 0
    pending: int = 0
    superseded: int = 0  # versions written again with the same bytes while taken: not failures, not processed
    seconds: float = 0.0
    stopped: str | None = None  # why a run stopped before the hot folder was done (its store failed)

    @property
    def processed(self) -> int:
        return self.archived + self.failed

    def line(self) -> str:
        again = f", {self.superseded} written again while taken" if self.superseded else ""
        return (
            f"Processed {count(self.processed, 'file')} in {self.seconds:.2f}s: {self.archived} archived"
            f" ({self.routed} routed), {self.failed} failed, {self.pending} pending{again}"
        )
