"""What `replay --apply` delivered: each copy recorded before it is written, marked published once in place.

The same care as the pipeline's journal (store.journal), kept for good: a copy is *planned* before its
temporary is written, *staged* once that is flushed, then renamed into place and marked *published*,
with its file's REPLAY reception in the same transaction. So a copy is never delivered twice, even when
a downstream tool has taken it since, and the statistics count each one once, whatever was interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from json_workflow.names import from_store, stored
from json_workflow.store import stats
from json_workflow.store.rows import FinishedFile, Received
from json_workflow.store.sql import Db, StoreBase

ReplayKey = tuple[str, str, str]  # (source, digest, final): one copy of one version of an archived file


class Replayed(NamedTuple):
    """A copy `replay --apply` delivers: an archived file's version (`digest`) to `final`, by `rules`."""

    source: str
    digest: str
    final: str
    temp: str
    rules: str  # joined by " + "
    state: str = "planned"  # planned, staged (flushed), published

    @property
    def key(self) -> ReplayKey:
        return self.source, self.digest, self.final


# A published copy's file, as the statistics receive it: its reception and how it is closed (row filled in here).
Reception = tuple[Received, FinishedFile]


# Paths are kept as the journal keeps them (names.stored): a name that is not UTF-8 as its bytes.
def _kept(key: ReplayKey) -> tuple[str | bytes, str, str | bytes]:
    return stored(key[0]), key[1], stored(key[2])


def _found(row: tuple[Any, ...]) -> Replayed:
    source, digest, final, temp, rules, state = row
    return Replayed(from_store(source), digest, from_store(final), from_store(temp), rules, state)


def insert(db: Db, copies: Sequence[Replayed]) -> None:
    db.insert_many(
        "replayed",
        ("source", "digest", "final", "temp", "rules", "state"),
        [(*_kept(c.key), stored(c.temp), c.rules, "planned") for c in copies],
        " ON CONFLICT (source, digest, final) DO UPDATE SET temp = excluded.temp, rules = excluded.rules,"
        " state = 'planned'",
    )


def mark(db: Db, keys: Sequence[ReplayKey], state: str) -> None:
    db.executemany(
        "UPDATE replayed SET state = ? WHERE source = ? AND digest = ? AND final = ?",
        [(state, *_kept(k)) for k in keys],
    )


def drop(db: Db, keys: Sequence[ReplayKey]) -> None:
    db.executemany("DELETE FROM replayed WHERE source = ? AND digest = ? AND final = ?", [_kept(k) for k in keys])


def publish(db: Db, keys: Sequence[ReplayKey], receptions: Sequence[Reception], instance: str) -> None:
    """Mark copies published and record their files' REPLAY receptions, in one transaction."""
    mark(db, keys, "published")
    if receptions:
        ids = stats.open_rows(db, [received for received, _ in receptions], instance)
        rows = [finished._replace(row=i) for i, (_, finished) in zip(ids, receptions, strict=True)]
        stats.close_rows(db, rows, receptions[0][0].at)


def of(db: Db, source: str, digest: str) -> list[Replayed]:
    """The copies of one version of an archived file, in any state."""
    return [
        _found(row)
        for row in db.execute(
            "SELECT source, digest, final, temp, rules, state FROM replayed WHERE source = ? AND digest = ?",
            (stored(source), digest),
        )
    ]


def unfinished(db: Db) -> list[Replayed]:
    """The copies an interrupted `replay --apply` left planned or staged."""
    return [
        _found(row)
        for row in db.execute(
            "SELECT source, digest, final, temp, rules, state FROM replayed WHERE state <> 'published' ORDER BY source"
        )
    ]


def last_delivery(db: Db, names: Sequence[str], client: str) -> list[str]:
    """The folders the pipeline delivered the newest archived reception of one of `names` (of `client`) to."""
    marks = ", ".join("?" * len(names))
    row = db.execute(
        f"SELECT id FROM files WHERE name IN ({marks}) AND client = ? AND outcome = 'archived' AND source <> 'REPLAY'"
        " ORDER BY finished DESC, id DESC LIMIT 1",
        (*names, client),
    ).fetchone()
    if row is None:
        return []
    return [from_store(folder) for (folder,) in db.execute("SELECT folder FROM routed WHERE file = ?", (row[0],))]


class ReplayStore(StoreBase):
    """The store's operations on what `replay --apply` delivered (store.api), mixed into store.common.SqlStore."""

    def _here(self, r: Replayed) -> Replayed:
        return r._replace(source=self._path(r.source), final=self._path(r.final), temp=self._path(r.temp))

    def replayed(self, source: str, digest: str) -> list[Replayed]:
        with self._reading() as db:
            return [self._here(r) for r in of(db, self._kept(source), digest)]

    def unfinished_replays(self) -> list[Replayed]:
        with self._reading() as db:
            return [self._here(r) for r in unfinished(db)]

    def write_replays(
        self,
        plan: Sequence[Replayed] = (),
        staged: Sequence[ReplayKey] = (),
        dropped: Sequence[ReplayKey] = (),
        published: Sequence[ReplayKey] = (),
        receptions: Sequence[Reception] = (),
    ) -> None:
        kept = self._kept
        plan = [r._replace(source=kept(r.source), final=kept(r.final), temp=kept(r.temp)) for r in plan]
        staged, dropped, published = (
            [(kept(s), d, kept(f)) for s, d, f in keys] for keys in (staged, dropped, published)
        )
        receptions = [
            (got._replace(claim=kept(got.claim)), done._replace(routed=[(rule, kept(to)) for rule, to in done.routed]))
            for got, done in receptions
        ]
        with self._transaction(durable=bool(staged or published)) as db:
            insert(db, plan)
            mark(db, staged, "staged")
            drop(db, dropped)
            publish(db, published, receptions, self.instance)

    def last_delivery(self, names: Sequence[str], client: str) -> list[str]:
        with self._reading() as db:
            return [self._path(folder) for folder in last_delivery(db, names, client)]
