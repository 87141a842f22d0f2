"""Intake: what is in the hot folder, when a file is complete, and claiming it."""

from enum import StrEnum


class Source(StrEnum):
    """How a file came in; shown in the log (`[REALTIME]`), the statistics and the report."""

    STARTUP = "STARTUP"  # the scan at start (and every file of `run --once`)
    REALTIME = "REALTIME"  # an event of the watcher
    PERIODIC = "PERIODIC"  # the periodic safety scan
    RECOVERY = "RECOVERY"  # left claimed by a crash, finished at the next start
