"""Redelivery (`replay --apply`): the copies new rules add to files already archived, each delivered once.

As new files' copies are: each copy is recorded in the journal (store.replays) before its hidden
temporary is written; the batch is flushed and marked staged; each temporary is renamed into place
with a rename that never replaces; the folders are flushed and the copies marked published, with
their files' REPLAY receptions, in one transaction. A run first finishes what an interrupted one
left (even by kill -9), and a copy once published is never delivered again, even when a downstream
tool has taken it since. Nothing is ever removed but our own temporaries.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from json_workflow import durable
from json_workflow.config import Config
from json_workflow.delivery.flush import Barrier
from json_workflow.delivery.folders import Folders, folder_names
from json_workflow.errors import Rejected
from json_workflow.intake import Source
from json_workflow.names import shown
from json_workflow.parse import Job, parse_job
from json_workflow.replay import Change, Delivered, digest
from json_workflow.routing.route import Destination
from json_workflow.store import Store
from json_workflow.store.replays import Reception, Replayed, ReplayKey
from json_workflow.store.rows import FinishedFile, Received

BATCH = 100  # files per flush: the journal's and the disk's round trips are shared by a batch
OTHER_BYTES = "a file of that name with other bytes is there"


@dataclass(frozen=True)
class Placed:
    """One added copy: the archived file, the folder it goes to, the rules behind it, and why it did not go."""

    source: str
    folder: str
    rules: tuple[str, ...]
    why: str = ""


@dataclass
class Applied:
    """What one `replay --apply` did with the added copies."""

    delivered: list[Placed] = field(default_factory=list)  # published now (or an interrupted run's, finished now)
    already: list[Placed] = field(default_factory=list)  # delivered before, or there with the same bytes
    left: list[Placed] = field(default_factory=list)  # not delivered, and why (other bytes there, cannot write)


def delivered_by(config: Config, store: Store) -> Delivered:
    """Which of a file's added folders already had this version: by `replay --apply`, or by the pipeline."""
    spellings: dict[str, list[str]] = {}  # a client's folder names in the hot folder, case-folded
    for name in folder_names(config.hot):
        spellings.setdefault(name.casefold(), []).append(name)

    def delivered(path: str, client: str, version: str, added: Sequence[Destination]) -> set[str]:
        """The folders (and URLs, as shown) that had it: as the destinations' `shown` names them."""
        done = {os.path.dirname(r.final) for r in store.replayed(path, version) if r.state == "published"}
        name = os.path.basename(path)
        names = {shown(f"{folder}/{name}") for folder in [client, *spellings.get(client.casefold(), [])]}
        return done | set(store.last_delivery([*names, shown(name)], shown(client)))

    return delivered


def apply(changes: Iterable[Change], config: Config, store: Store, applied: Applied) -> None:
    """Finish what an interrupted run left, then deliver the added copies of each change, a batch at a time."""
    finish_interrupted(config, store, applied)
    folders, changes = Folders(config), (c for c in changes if c.added)
    while batch := list(itertools.islice(changes, BATCH)):
        _Batch(config, store, folders, applied).run(batch)


def finish_interrupted(config: Config, store: Store, applied: Applied) -> None:
    """Copies a run left staged are published (a temporary that is gone was renamed); planned ones are dropped."""
    rows = store.unfinished_replays()
    if not rows:
        return
    batch = _Batch(config, store, Folders(config), applied)
    for r in rows:
        if r.state == "planned":  # maybe half written: a later run plans it again from the archived file
            durable.remove_quietly(r.temp)
            batch.dropped.append(r.key)
        elif not os.path.lexists(r.temp):  # renamed into place before the interruption (maybe taken since)
            batch.done.append(r)
        else:
            batch.staged.append(r)
    batch.rename()
    batch.record()


class _Batch:
    """The copies of a batch of files on their way: planned, written, flushed, staged, renamed, published."""

    def __init__(self, config: Config, store: Store, folders: Folders, applied: Applied):
        self.config, self.store, self.folders, self.applied = config, store, folders, applied
        self.barrier = Barrier(config.flush)
        self.planned: list[tuple[Replayed, bytes]] = []
        self.staged: list[Replayed] = []
        self.dropped: list[ReplayKey] = []
        self.present: list[Replayed] = []  # already there with the same bytes: recorded as published
        self.done: list[Replayed] = []
        self.jobs: dict[str, Job | None] = {}
        self.began = time.perf_counter()

    def run(self, changes: list[Change]) -> None:
        finals: set[str] = set()
        for change in changes:
            try:
                with open(change.path, "rb") as f:
                    data = f.read()
            except OSError as e:
                self._left_all(change, f"cannot read it: {e.strerror or e}")
                continue
            if digest(data) != change.digest:  # archived again meanwhile: its new version is routed next time
                self._left_all(change, "it changed since replay read it: run replay again")
                continue
            self.jobs[change.path] = change.job
            for destination in change.added:
                self._plan(change, destination, data, finals)
        # A copy there already with the same bytes counts as delivered at once: a consumer may take it any time.
        present, self.present = self.present, []
        self.store.write_replays(plan=[r for r, _ in self.planned] + present, published=[r.key for r in present])
        self.applied.already += [_placed(c, "there already with the same bytes") for c in present]
        self._write()
        self.rename()
        self.record()

    def _plan(self, change: Change, destination: Destination, data: bytes, finals: set[str]) -> None:
        name = os.path.basename(change.path)
        final = os.path.join(destination.path, name)
        copy = Replayed(change.path, change.digest, final, "", " + ".join(destination.reasons))
        if destination.remote is not None:
            self._left(copy._replace(final=f"{destination.shown}/{name}"), "replay --apply does not send to URLs yet")
        elif final in finals:
            self._left(copy, "another archived file of that name goes there in this run")
        elif os.path.lexists(final):
            if durable.holds(final, data):
                self.present.append(copy)
            else:
                self._left(copy, OTHER_BYTES)
        else:
            try:
                self.folders.ensure(destination.folder)  # as the pipeline makes its folders: below the root only
            except OSError as e:
                self._left(copy, f"cannot make its folder: {e.strerror or e}")
                return
            finals.add(final)
            self.planned.append((copy._replace(temp=durable.temp_name(destination.path, name)), data))

    def _write(self) -> None:
        """Write and flush the temporaries, then mark them staged: only staged copies are renamed into place."""
        mode = self.config.permissions.file_mode
        for copy, data in self.planned:
            try:
                durable.write_new(copy.temp, data, mode)
            except OSError as e:
                self._left(copy, f"cannot write: {e.strerror or e}")
                self.dropped.append(copy.key)
                continue
            self.barrier.add(os.path.dirname(copy.temp), copy.temp)
            self.staged.append(copy)
        try:
            self.barrier.flush()
        except OSError as e:
            for copy in self.staged:
                durable.remove_quietly(copy.temp)
                self._left(copy, f"the disk refused to flush it: {e.strerror or e}")
                self.dropped.append(copy.key)
            self.staged = []
        self.store.write_replays(staged=[c.key for c in self.staged], dropped=self.dropped)
        self.dropped = []

    def rename(self) -> None:
        """Rename the staged temporaries into place, never over a file, and flush the folders."""
        renamed: list[Replayed] = []
        for copy in self.staged:
            try:
                durable.rename_new(copy.temp, copy.final)
            except FileExistsError:  # placed meanwhile (the pipeline, a person)
                same = durable.same_bytes(copy.final, copy.temp)
                durable.remove_quietly(copy.temp)
                if same:
                    self.present.append(copy)
                else:
                    self._left(copy, OTHER_BYTES)
                    self.dropped.append(copy.key)
                continue
            except OSError as e:
                durable.remove_quietly(copy.temp)
                self._left(copy, f"cannot place it: {e.strerror or e}")
                self.dropped.append(copy.key)
                continue
            self.barrier.add(os.path.dirname(copy.final))
            renamed.append(copy)
        self.staged = []
        try:
            self.barrier.flush()
        except OSError as e:  # not known durable: left staged, the next run publishes or rewrites them
            why = f"placed, but the disk refused to flush it ({e.strerror or e}): run replay --apply again"
            self.applied.left += [_placed(copy, why) for copy in renamed]
            return
        self.done += renamed

    def record(self) -> None:
        """Mark the copies published, with a REPLAY reception per file that got copies now, in one transaction."""
        now, seconds = time.time(), time.perf_counter() - self.began
        by_source: dict[str, list[Replayed]] = {}
        for copy in self.done:
            by_source.setdefault(copy.source, []).append(copy)
        receptions = [self._reception(source, copies, now, seconds) for source, copies in by_source.items()]
        self.store.write_replays(
            published=[c.key for c in self.done + self.present], dropped=self.dropped, receptions=receptions
        )
        self.applied.delivered += [_placed(c) for c in self.done]
        self.applied.already += [_placed(c, "there already with the same bytes") for c in self.present]

    def _reception(self, source: str, copies: list[Replayed], now: float, seconds: float) -> Reception:
        """A file given copies now, as received from REPLAY and archived with them (its job's facts known)."""
        client, name = os.path.basename(os.path.dirname(source)), os.path.basename(source)
        job = self.jobs[source] if source in self.jobs else _job(source, client)
        finished = FinishedFile(
            0,
            "archived",
            seconds,
            client,
            job.category if job else None,
            job.studio if job else None,
            job.title if job else None,
            routed=[(rule, os.path.dirname(c.final)) for c in copies for rule in c.rules.split(" + ")],
            job=job.number if job else None,
        )
        return Received(source, shown(f"{client}/{name}"), shown(client), str(Source.REPLAY), now, None), finished

    def _left(self, copy: Replayed, why: str) -> None:
        self.applied.left.append(_placed(copy, why))

    def _left_all(self, change: Change, why: str) -> None:
        for d in change.added:
            self.applied.left.append(Placed(change.path, d.path, d.reasons, why))


def _placed(copy: Replayed, why: str = "") -> Placed:
    return Placed(copy.source, os.path.dirname(copy.final), tuple(copy.rules.split(" + ")), why)


def _job(source: str, client: str) -> Job | None:
    """The facts of an archived file an interrupted run gave copies (for its reception); None if unreadable."""
    try:
        with open(source, "rb") as f:
            return parse_job(f.read(), client, keep_document=False)
    except (OSError, Rejected):
        return None
