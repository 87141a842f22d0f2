"""Intake: what is in the hot folder, when a file is complete, and claiming it."""

from enum import StrEnum


class Source(StrEnum):
    """How a file came in; shown in the log (`[REALTIME]`), the statistics and the report."""

    STARTUP = "STARTUP"  # the scan at start (and every file of `run --once`)
    REALTIME = "REALTIME"  # an event of the watcher
    PERIODIC = "PERIODIC"  # the periodic safety scan
    RECOVERY = "RECOVERY"  # left claimed by a crash, finished at the next start
    REPLAY = "REPLAY"  # an archived file given the copies a new rule adds (`replay --apply`)


class ScanOutcome(StrEnum):
    """How a periodic scan ended; counted in the statistics and the report."""

    COMPLETED = "completed"
    SKIPPED = "skipped"  # the previous scan was still running
    ABANDONED = "abandoned"  # past scan_timeout, or the hot folder went away
