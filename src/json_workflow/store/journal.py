"""The journal's SQL (SQLite): every copy recorded before it is published.

It is what makes a crash harmless. Each copy's hidden temporary is recorded as *planned* before it is
written and as *staged* once it is flushed; only then is it renamed into place. After a crash, for a
claimed file still in the claim area:

- a planned copy's temporary may be partial: it is removed and the copy made again;
- a staged copy whose temporary still exists was not published: it is renamed into place now;
- a staged copy whose temporary is gone was published (a downstream tool may already have taken it):
  it is not delivered again.
"""

from __future__ import annotations

from collections.abc import Iterable

from json_workflow.names import from_store, stored
from json_workflow.store.rows import Entry, PlannedCopy
from json_workflow.store.sql import Db


def plan(db: Db, copies: Iterable[PlannedCopy]) -> None:
    # Bytes that are not UTF-8 can only come from the file's name and client folder, which the claim's
    # path holds too: when it is plain ASCII, so are they, and the configured folders are text.
    db.insert_many(
        "copies",
        ("claim", "temp", "final", "kind"),
        [row if row[0].isascii() else (stored(row[0]), stored(row[1]), stored(row[2]), row[3]) for row in copies],
        " ON CONFLICT (claim, temp) DO UPDATE SET final = excluded.final, kind = excluded.kind, state = 'planned'",
    )


def mark_staged(db: Db, claims: Iterable[str]) -> None:
    db.for_each("UPDATE copies SET state = 'staged' WHERE claim = ?", [stored(c) for c in claims])


def forget(db: Db, claims: list[str], attempted: bool) -> None:
    """Drop the claims' copies (and their restart counts, when any claim has one)."""
    kept = [stored(c) for c in claims]
    db.for_each("DELETE FROM copies WHERE claim = ?", kept)
    if attempted:
        db.for_each("DELETE FROM attempts WHERE claim = ?", kept)


def restart(db: Db, claim: str) -> None:
    db.execute("DELETE FROM copies WHERE claim = ?", (stored(claim),))
    db.execute(
        "INSERT INTO attempts (claim, count) VALUES (?, 1)"
        " ON CONFLICT (claim) DO UPDATE SET count = attempts.count + 1",
        (stored(claim),),
    )


def restarts(db: Db, claim: str) -> int:
    row = db.execute("SELECT count FROM attempts WHERE claim = ?", (stored(claim),)).fetchone()
    return row[0] if row else 0


def attempted(db: Db) -> set[str]:
    """Every claim with a restart count."""
    return {from_store(row[0]) for row in db.execute("SELECT claim FROM attempts")}


def entries(db: Db, claim: str) -> list[Entry]:
    rows = db.execute(
        "SELECT claim, temp, final, kind, state FROM copies WHERE claim = ? ORDER BY rowid", (stored(claim),)
    ).fetchall()
    return [Entry(from_store(c), from_store(t), from_store(f), kind, state) for c, t, f, kind, state in rows]


def claims(db: Db) -> list[str]:
    rows = db.execute("SELECT claim FROM copies GROUP BY claim ORDER BY MIN(rowid)").fetchall()
    return [from_store(row[0]) for row in rows]


def adopt(db: Db, claim: str, new: str) -> None:
    """A claim moved to `new` (taken over from a dead instance): its restart count and open row follow it."""
    db.execute("DELETE FROM copies WHERE claim = ?", (stored(claim),))
    db.execute("UPDATE attempts SET claim = ? WHERE claim = ?", (stored(new), stored(claim)))
    db.execute("UPDATE files SET claim = ? WHERE claim = ? AND outcome IS NULL", (stored(new), stored(claim)))
