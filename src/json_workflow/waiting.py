"""Files that wait: back in the hot folder because their destination, their writer or the journal said no.

A file still being written is watched again (taken once closed, or stable). One whose destination is
in trouble is held and tried again with a growing delay (2 s, 4 s ... retry_max_seconds). When that
destination works again, every file held for it is taken at once, and the log says so, once: which
destination, after how long, and how many files that waited then went out.
"""

from __future__ import annotations

import time
from collections import Counter

from json_workflow.config import Config
from json_workflow.delivery.model import Delivery
from json_workflow.errors import DestinationError, EndpointError, StillWriting
from json_workflow.intake.stability import StabilityTracker
from json_workflow.logs import log
from json_workflow.monitor.live import Monitor
from json_workflow.names import shown
from json_workflow.plural import count, plural
from json_workflow.reporting.figures import duration


class Waiting:
    """The service's files that wait, by what they wait for."""

    def __init__(self, config: Config, tracker: StabilityTracker, monitor: Monitor):
        self.config, self.tracker, self.monitor = config, tracker, monitor
        self.attempts: Counter[str] = Counter()  # hot-folder path -> tries so far
        self.held_for: dict[str, str] = {}  # hot-folder path -> the destination folder it waits for

    def finished(self, deliveries: list[Delivery]) -> None:
        """Hold what waits for its destination with a growing delay; take again at once what waits no more."""
        for folder, since in self.monitor.finished(deliveries):  # destinations that work again
            self._working_again(folder, since)
        for d in deliveries:
            origin, waiting_on = d.candidate.origin, d.waiting_on
            if d.left_claimed:
                continue
            if isinstance(waiting_on, StillWriting):
                self.tracker.seen(origin, d.source)  # taken again once closed, or stable
            elif waiting_on is not None:
                self.attempts[origin] += 1
                delay = min(self.config.retry_max_seconds, 2.0 ** self.attempts[origin])
                if isinstance(waiting_on, EndpointError) and waiting_on.after:  # never sooner than it asked
                    delay = max(delay, waiting_on.after)
                self.tracker.hold(origin, d.source, delay)
                if isinstance(waiting_on, DestinationError):
                    self.monitor.held(waiting_on, delay)
                    self.held_for[origin] = waiting_on.folder
            else:
                self.attempts.pop(origin, None)
                self.held_for.pop(origin, None)
        self.monitor.holding(Counter(self.held_for.values()))

    def _working_again(self, folder: str, since: float | None) -> None:
        """Take at once every file held for `folder`, which works again; say so once."""
        waited = [origin for origin, held in self.held_for.items() if held == folder]
        self.tracker.release(waited)  # those that just went out are not held: released only the others
        seconds = time.time() - since if since is not None else 0.0
        log.info(
            "Destination %s is working again after %s: the %s that waited for it %s out now",
            shown(self.config.relative(folder)),
            f"{seconds:.0f}s" if seconds < 60 else duration(seconds),
            count(len(waited), "file"),
            plural(len(waited), "goes", "go"),
        )
