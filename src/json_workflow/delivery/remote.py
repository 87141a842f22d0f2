"""Copies sent to URL destinations, after the journal recorded them and before any local copy is written.

A batch hands its files with copies to URLs to the senders and goes on without them: each rule has a pool
of its own (`concurrency` copies at once, a queue before it), so a slow or dead endpoint holds only its own
files. A file comes back to the pipeline, to be written, published and finished with a later batch, once
every copy of it is answered.

Each copy has an idempotency key: one version of one file (its bytes and modification time) to one rule,
so a file sent again (after a crash, or after it waited for another destination) carries the same key, and
a copy the journal knows was acknowledged is not sent again. An endpoint in trouble (no answer, 408, 429,
5xx) holds its files in the hot folder, each tried again later, none sooner than its Retry-After; any other
refusal fails the file with the endpoint's answer as its reason.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from json_workflow.delivery import records, stages
from json_workflow.delivery.folders import Folders
from json_workflow.delivery.model import Answer, Copy, Delivery, Kind
from json_workflow.errors import DestinationError, EndpointError, Rejected, StoreError, detached
from json_workflow.logs import log
from json_workflow.routing.remote import shown_url
from json_workflow.routing.rules import Rule
from json_workflow.store import Store
from json_workflow.store.rows import SentCopy

_SEND = Kind.SEND
# Files on their way to URLs at most: a slow endpoint's burst waits in the hot folder (run --once: unread), and
# a restart after a crash recovers (one at a time) no more than these besides a batch.
ON_THE_WAY = 512
BUSY = f"{ON_THE_WAY} files are on their way to URLs already; it waits its turn"


class Endpoint(Protocol):
    """An http(s) or sftp:// destination's client (delivery.http, delivery.sftp)."""

    def send(self, url: str, data: bytes, key: str, client: str, name: str) -> Answer: ...

    def close(self) -> None: ...


class Senders:
    """The URL destinations' connections (one pool per rule) and the files whose copies are on their way."""

    def __init__(
        self,
        routes: tuple[Rule, ...],
        store: Store,
        folders: Folders,
        clock: Callable[[], float],
        wake: Callable[[], None] | None = None,
    ):
        """`wake`: called when a file comes back (a service's main loop waits for its files, not for these)."""
        self.store, self.folders, self.clock, self.wake = store, folders, clock, wake
        self.endpoints: dict[str, Endpoint] = {}
        self.pools: dict[str, ThreadPoolExecutor] = {}
        for rule in routes:
            endpoint = rule.endpoint
            if endpoint is None:
                continue
            # Their libraries (urllib3, paramiko) are imported only where a rule needs them: every run starts faster.
            if endpoint.is_http:
                from json_workflow.delivery.http import HttpEndpoint

                self.endpoints[rule.name] = HttpEndpoint(rule, _secret(rule.token_env))
            else:
                from json_workflow.delivery.sftp import SftpEndpoint

                self.endpoints[rule.name] = SftpEndpoint(rule, _secret(rule.password_env))
            self.pools[rule.name] = ThreadPoolExecutor(rule.concurrency, thread_name_prefix=f"send-{rule.name}")
        self._answered = threading.Condition()
        self._unanswered: dict[int, int] = {}  # id of a file on its way -> its copies not answered yet
        self._back: list[Delivery] = []  # files whose copies are all answered
        self._troubles: list[DestinationError] = []  # new ones, to log

    def hand(self, planned: list[Delivery]) -> list[Delivery]:
        """Send the copies to URLs of `planned` (recorded in the journal, nothing written yet) in the background;
        returns the files that have none (the others come back through `take`)."""
        if not self.endpoints:  # no URL rule: nothing to look for
            return planned
        sending = [d for d in planned if d.waiting_on is None and any(c.kind == _SEND for c in d.copies)]
        if not sending:
            return planned
        room = ON_THE_WAY - self.on_the_way()
        for d in sending[max(0, room) :]:  # a slow endpoint and a burst: the rest wait in the hot folder
            url = next(c.final for c in d.copies if c.kind == _SEND)
            d.waiting_on, d.copies = detached(EndpointError(shown_url(url), BUSY)), []
        sending = sending[: max(0, room)]
        acked = self.store.acknowledged([c.temp for d in sending for c in d.copies if c.kind == _SEND])
        for d in sending:
            todo = [(c, self._rule(d, c)) for c in d.copies if c.kind == _SEND and c.temp not in acked]
            with self._answered:
                if todo:
                    self._unanswered[id(d)] = len(todo)
                else:
                    self._back.append(d)  # every copy acknowledged before (it waited for another destination)
            for c, rule in todo:
                self.pools[rule.name].submit(self._copy, d, c, rule)
        if self.wake is not None and self._back:
            self.wake()
        handed = {id(d) for d in sending}
        return [d for d in planned if id(d) not in handed]

    def take(self, now: float) -> tuple[list[Delivery], list[DestinationError]]:
        """The files whose copies are all answered, and new troubles to log. A file an endpoint refused is
        planned into the failed folder instead (its failed copies recorded), one whose endpoint is in
        trouble waits (its copies dropped)."""
        if not self.endpoints:
            return [], []
        with self._answered:
            back, troubles, self._back, self._troubles = self._back, self._troubles, [], []
        refused = [d for d in back if d.rejection is not None and d.waiting_on is None and d.job is not None]
        for d in refused:
            if trouble := stages.prepare(d, self.folders, now):  # its copies now: into the failed folder
                troubles.append(trouble)
        try:
            self.store.record_plan(records.planned(d for d in refused if d.waiting_on is None))
        except Exception as e:  # nothing is written yet: they wait for the journal
            for d in refused:
                d.waiting_on = d.waiting_on or detached(StoreError(str(e)))
        for d in back:
            if d.waiting_on is not None:
                d.copies = []  # nothing is written yet: it waits in the hot folder
        return back, troubles

    def on_the_way(self) -> int:
        """Files handed and not back yet."""
        with self._answered:
            return len(self._unanswered)

    def back(self) -> bool:
        """True when a file is back and not taken yet."""
        if not self.endpoints:
            return False
        with self._answered:
            return bool(self._back)

    def busy(self) -> bool:
        """True while a file is on its way or back and not taken yet."""
        if not self.endpoints:
            return False
        with self._answered:
            return bool(self._unanswered or self._back)

    def wait(self, timeout: float | None = None) -> None:
        """Until a file is back (or `timeout` passes)."""
        with self._answered:
            self._answered.wait_for(lambda: self._back or not self._unanswered, timeout)

    def _rule(self, d: Delivery, c: Copy) -> Rule:
        dest = next(x for x in d.destinations if x.path == c.final)
        assert dest.remote is not None
        return dest.remote[0]

    def _copy(self, d: Delivery, c: Copy, rule: Rule) -> None:
        """One copy sent (in its rule's pool), its acknowledgement recorded at once (a kill -9 sends again at
        most the copies in flight); the file comes back once its last copy is answered."""
        assert d.data is not None and d.job is not None
        started = time.perf_counter()
        known = self.folders.trouble(c.final)  # found meanwhile: not tried again now
        if known is not None:
            answer = Answer(False, retry=True, reason=getattr(known, "reason", str(known)))
        else:
            answer = self._send(d, c, rule)
        with self._answered:
            if known is None:  # a request made, answered or not
                d.sent.append((rule.name, time.perf_counter() - started))
            if answer.retry:
                trouble = EndpointError(shown_url(c.final), answer.reason, answer.after)
                if self.folders.mark_unreachable(c.final, trouble, self.clock()):
                    self._troubles.append(trouble)
                d.waiting_on = d.waiting_on or detached(trouble)
            elif not answer.sent and d.rejection is None:
                d.rejection = detached(Rejected(f'rule "{rule.name}": {shown_url(c.final)} refused it: '
                                                f"{answer.reason}", "deliver"))  # fmt: skip
            self._unanswered[id(d)] -= 1
            if self._unanswered[id(d)]:
                return
            del self._unanswered[id(d)]
            self._back.append(d)
            self._answered.notify_all()
        if self.wake is not None:
            self.wake()

    def _send(self, d: Delivery, c: Copy, rule: Rule) -> Answer:
        assert d.data is not None and d.job is not None
        try:
            answer = self.endpoints[rule.name].send(c.final, d.data, c.temp, d.job.client, d.candidate.name)
        except Exception as e:  # not the endpoint's answer: a fault here; the file waits, and it is logged
            log.exception("Unexpected error sending %s to %s", d.candidate.display, shown_url(c.final))
            return Answer(False, retry=True, reason=f"unexpected error ({type(e).__name__}: {e})")
        if answer.sent:
            row = SentCopy(c.temp, d.row, rule.name, shown_url(c.final), answer.status, time.time())
            try:
                self.store.record_sent([row])
            except Exception as e:  # sent all the same: sent again with its key after a crash
                log.error("Cannot record in the journal that %s took %s: %s", row.url, d.candidate.display, e)
        return answer

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=True)
        for endpoint in self.endpoints.values():
            endpoint.close()


def _secret(name: str | None) -> str | None:
    return os.environ.get(name) if name else None
