"""Copies sent to URL destinations, after the journal recorded them and before any local copy is written.

Each copy has an idempotency key: one version of one file (its bytes and modification time) to one rule,
so a file sent again (after a crash, or after it waited for another destination) carries the same key, and
a copy the journal knows was acknowledged is not sent again. An endpoint in trouble (no answer, 408, 429,
5xx) holds its files in the hot folder, each tried again later, none sooner than its Retry-After; any other
refusal fails the file with the endpoint's answer as its reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from json_workflow.delivery import records, stages
from json_workflow.delivery.folders import Folders
from json_workflow.delivery.model import Copy, Delivery, Kind
from json_workflow.errors import DestinationError, EndpointError, Rejected, StoreError, detached
from json_workflow.logs import log
from json_workflow.routing.remote import shown_url
from json_workflow.routing.rules import Rule
from json_workflow.store import Store
from json_workflow.store.rows import SentCopy

if TYPE_CHECKING:
    from json_workflow.delivery.http import Answer

_SEND = Kind.SEND


class Endpoint(Protocol):
    """An http(s) or sftp:// destination's client (delivery.http, delivery.sftp)."""

    def send(self, url: str, data: bytes, key: str, client: str, name: str) -> Answer: ...

    def close(self) -> None: ...


class Senders:
    """The URL destinations' connections (one pool per rule, `concurrency` copies at once) and their sending."""

    def __init__(self, routes: tuple[Rule, ...], store: Store, folders: Folders, clock: Callable[[], float]):
        self.store, self.folders, self.clock = store, folders, clock
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

    def send(self, planned: list[Delivery], now: float) -> list[DestinationError]:
        """Send the copies of `planned` (recorded in the journal, nothing written yet) that the journal has no
        acknowledgement of. A file an endpoint refused is planned into the failed folder instead, one whose
        endpoint is in trouble waits (its copies dropped). Returns the new troubles, to log."""
        todo = [(d, c) for d in planned if d.waiting_on is None for c in d.copies if c.kind == _SEND]
        if not todo:
            return []
        troubles: list[DestinationError] = list(self._send(todo))
        refused = [d for d in planned if d.rejection is not None and d.waiting_on is None and d.job is not None]
        for d in refused:
            if trouble := stages.prepare(d, self.folders, now):  # its copies now: into the failed folder
                troubles.append(trouble)
        try:
            self.store.record_plan(records.planned(d for d in refused if d.waiting_on is None))
        except Exception as e:  # nothing is written yet: they wait for the journal
            for d in refused:
                d.waiting_on = d.waiting_on or detached(StoreError(str(e)))
        for d in planned:
            if d.waiting_on is not None:
                d.copies = []  # nothing is written yet: it waits in the hot folder
        return troubles

    def _send(self, todo: list[tuple[Delivery, Copy]]) -> Iterator[EndpointError]:
        acked = self.store.acknowledged([c.temp for _, c in todo])
        sent: dict[Future[Answer], tuple[Delivery, Copy, Rule]] = {}
        for d, c in todo:
            if c.temp not in acked:
                dest = next(x for x in d.destinations if x.path == c.final)
                assert dest.remote is not None
                sent[self.pools[dest.remote[0].name].submit(self._copy, d, c, dest.remote[0])] = (d, c, dest.remote[0])
        for future, (d, c, rule) in sent.items():
            answer = future.result()
            if answer.retry:
                trouble = EndpointError(shown_url(c.final), answer.reason, answer.after)
                if self.folders.mark_unreachable(c.final, trouble, self.clock()):
                    yield trouble
                d.waiting_on = d.waiting_on or detached(trouble)
            elif not answer.sent and d.rejection is None:
                d.rejection = detached(Rejected(f'rule "{rule.name}": {shown_url(c.final)} refused it: '
                                                f"{answer.reason}", "deliver"))  # fmt: skip

    def _copy(self, d: Delivery, c: Copy, rule: Rule) -> Answer:
        """One copy sent (in its rule's pool), and its acknowledgement recorded at once: a kill -9 sends
        again at most the copies in flight."""
        assert d.data is not None and d.job is not None
        started = time.perf_counter()
        answer = self.endpoints[rule.name].send(c.final, d.data, c.temp, d.job.client, d.candidate.name)
        d.sent.append((rule.name, time.perf_counter() - started))
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
