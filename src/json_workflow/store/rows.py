"""The plain rows that cross the store's seam, both ways; no connection, cursor or SQL ever does.

Paths are str as `os` gives them (a name that is not UTF-8 carries surrogate escapes; how it is kept
is the store's business); names and clients are text as the log shows them; times are UTC seconds
since the epoch. Rows are tuples: a batch makes hundreds, and a frozen dataclass costs three times as much.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# The outcomes a file's row is closed with: delivery.model.Outcome's first four (the figures count them).
ARCHIVED, FAILED, PENDING, SUPERSEDED = "archived", "failed", "pending", "superseded"


# A copy recorded before its temporary is written: (claim, temp, final, kind), kind copy, move, failed or
# reason; a move's temporary is the claim itself. A plain tuple: a batch has hundreds, built in a loop.
PlannedCopy = tuple[str, str, str, str]


class Entry(NamedTuple):
    """A copy as the journal has it, for recovery: state planned, or staged once flushed."""

    claim: str
    temp: str
    final: str
    kind: str
    state: str


class SentCopy(NamedTuple):
    """A copy an endpoint acknowledged, under its idempotency key."""

    key: str
    file: int | None  # its row in files, when known
    rule: str
    url: str  # as shown: no query values
    status: int | None  # the HTTP status; None for SFTP
    at: float


class Received(NamedTuple):
    """A claimed file whose row opens (or reopens) when its batch is planned."""

    claim: str
    name: str  # CLIENT/name.json
    client: str | None  # its client folder; None at the top of the hot folder
    source: str  # STARTUP, REALTIME, PERIODIC, RECOVERY
    at: float  # when it was claimed
    inode: int | None  # with the name, recognises a file that waited for its destination
    after_crash: bool = False  # its row was opened before a crash: found again by its claim


class FinishedFile(NamedTuple):
    """How a file's row is closed: archived, failed or pending (waiting in the hot folder again)."""

    row: int
    outcome: str
    seconds: float  # processing time, claim to finish
    client: str | None = None  # the ClientCode's folder; None keeps the client folder's
    category: str | None = None
    studio: str | None = None
    title: str | None = None
    stage: str | None = None
    reason: str | None = None
    inode: int | None = None  # in the hot folder, for a pending file; None keeps the known one
    routed: Sequence[tuple[str, str]] = ()  # (rule, folder) of each copy sent
    job: str | None = None  # JobDetails.JobNumber
    failed_as: str | None = None  # the failed file, for a failed one


class Batch(NamedTuple):
    at: float
    size: int
    seconds: float


class SourceCount(NamedTuple):
    source: str
    processed: int
    failed: int


class ClientCount(NamedTuple):
    client: str
    processed: int
    errors: int
    routed: int  # files with at least one copy sent by a rule
    highlighted: int  # files sent by a rule whose name contains the highlight


class Failure(NamedTuple):
    finished: float
    client: str | None
    name: str
    stage: str
    reason: str


class ReceivedFile(NamedTuple):
    name: str
    claim: str | None
    outcome: str | None  # None while in flight


class TroubleCount(NamedTuple):
    folder: str
    times: int
    first: float
    error: str  # the last one, in sort order


class DaySummary(NamedTuple):
    """The head of a day's figures, cheap enough for every view of the overview."""

    processed: int
    archived: int
    errors: int
    clients: list[ClientCount]  # most files first
    instances: list[InstanceCount] = []  # files processed per instance


class InstanceCount(NamedTuple):
    instance: str  # "-" for files processed before instances were recorded
    processed: int
    failed: int


class DayRows(NamedTuple):
    """What a day's figures are computed from: the rows of one window [start, end), mostly counted."""

    processed: int  # files archived or failed within the window
    archived: int
    errors: int
    average_seconds: float
    sources: list[SourceCount]
    batches: int
    average_batch: float
    scans: dict[str, int]  # by outcome: completed, skipped, abandoned
    scans_slow: int
    clients: list[ClientCount]  # most files first
    categories: list[tuple[str, str, int]]  # (client, category, files), by client, most files first
    destinations: list[tuple[str, int]]  # (folder, files), most files first
    hours: dict[int, int]  # files finished in each hour since the window's start
    last_errors: list[Failure]  # newest first
    received: list[ReceivedFile]  # every file received within the window, in order
    service_started: float | None  # the running service's start, if one is running
    instances: list[InstanceCount] = []  # files processed, per instance


class AlertState(NamedTuple):
    since: float  # alerts cover what happened after this
    sent: float  # the last alert mailed; 0.0 before the first


class FileRecord(NamedTuple):
    """One time a file was received, as the file history and the failed files page show it."""

    id: int
    received: float
    name: str  # CLIENT/name.json
    client: str | None
    source: str
    outcome: str | None  # None while in flight
    finished: float | None
    seconds: float | None
    category: str | None
    job: str | None
    stage: str | None
    reason: str | None
    failed_as: str | None  # the failed file
    retried: float | None  # when the failed file was put back into the hot folder
    routed: list[tuple[str, str]]  # (rule, folder) of each copy sent
    sent: list[tuple[str, str, int | None, float]] = []  # (rule, URL, HTTP status, when) each acknowledged


class LastScan(NamedTuple):
    at: float
    outcome: str  # completed, skipped, abandoned
    seconds: float | None
    found: int | None


class SentReport(NamedTuple):
    day: str  # YYYY-MM-DD
    sent: float


class Member(NamedTuple):
    """An instance of a fleet, as its lease row says (store.fleet)."""

    name: str
    host: str
    pid: int
    started: float
    beat: float  # its last renewal, by the store's clock
    epoch: int
    taken_by: str | None  # the instance that last took over its claim area
    taken: float | None
    report: str | None = None  # its report settings (JSON, Config.report_settings) as it joined


class LiveRow(NamedTuple):
    """What a running service saved of its live state (JSON), and when."""

    instance: str
    pid: int
    started: float
    beat: float
    state: str
