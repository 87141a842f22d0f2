"""What `replay --apply` delivered: each copy recorded before it is written, marked published once in place.

The same care as the pipeline's journal (store.journal), kept for good: a copy is *planned* before its
temporary is written, *staged* once that is flushed, then renamed into place and marked *published*,
with its file's REPLAY reception in the same transaction. So a copy is never delivered twice, even when
a downstream tool has taken it since, and the statistics count each one once, whatever was interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from json_workflow.store import stats
from json_workflow.store.rows import FinishedFile, Received
from json_workflow.store.sql import Db


class Replayed(NamedTuple):
    """A copy `replay --apply` delivers: an archived file's version (`digest`) to `final`, by `rules`."""

    source: str
    digest: str
    final: str
    temp: str
    rules: str  # joined by " + "
    state: str = "planned"  # planned, staged (flushed), published

    @property
    def key(self) -> tuple[str, str, str]:
        return self.source, self.digest, self.final


# A published copy's file, as the statistics receive it: its reception and how it is closed (row filled in here).
Reception = tuple[Received, FinishedFile]


def plan(db: Db, copies: Sequence[Replayed]) -> None:
    db.insert_many(
        "replayed",
        ("source", "digest", "final", "temp", "rules", "state"),
        [(*c[:5], "planned") for c in copies],
        " ON CONFLICT (source, digest, final) DO UPDATE SET temp = excluded.temp, rules = excluded.rules,"
        " state = 'planned'",
    )


def mark(db: Db, keys: Sequence[tuple[str, str, str]], state: str) -> None:
    db.executemany(
        "UPDATE replayed SET state = ? WHERE source = ? AND digest = ? AND final = ?", [(state, *k) for k in keys]
    )


def drop(db: Db, keys: Sequence[tuple[str, str, str]]) -> None:
    db.executemany("DELETE FROM replayed WHERE source = ? AND digest = ? AND final = ?", keys)


def publish(db: Db, keys: Sequence[tuple[str, str, str]], receptions: Sequence[Reception], instance: str) -> None:
    """Mark copies published and record their files' REPLAY receptions, in one transaction."""
    mark(db, keys, "published")
    if receptions:
        ids = stats.open_rows(db, [received for received, _ in receptions], instance)
        rows = [finished._replace(row=i) for i, (_, finished) in zip(ids, receptions, strict=True)]
        stats.close_rows(db, rows, receptions[0][0].at)


def of(db: Db, source: str, digest: str) -> list[Replayed]:
    """The copies of one version of an archived file, in any state."""
    return [
        Replayed(*row)
        for row in db.execute(
            "SELECT source, digest, final, temp, rules, state FROM replayed WHERE source = ? AND digest = ?",
            (source, digest),
        )
    ]


def unfinished(db: Db) -> list[Replayed]:
    """The copies an interrupted `replay --apply` left planned or staged."""
    return [
        Replayed(*row)
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
    return [folder for (folder,) in db.execute("SELECT folder FROM routed WHERE file = ?", (row[0],))]
