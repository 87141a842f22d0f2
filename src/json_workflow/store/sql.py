"""What the store's SQL modules ask of a connection: SQLite's (below) and PostgreSQL's (store.postgres) give it.

The statements themselves are written once, in the dialect both understand: `?` marks, ON CONFLICT,
RETURNING, CASE instead of summed booleans, FLOOR (registered on SQLite when it lacks it). The rows of
a batch go through insert_many, update_many and for_each: SQLite runs a prepared statement per row, which costs
it next to nothing; PostgreSQL one statement over arrays, since each statement is a round to the server.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class Db(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any: ...

    def new_ids(self, count: int) -> list[int]:
        """Ids for `count` new file rows (inside the transaction that inserts them)."""
        ...

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Any], tail: str = "") -> None:
        """INSERT INTO table (columns) each row, then `tail` (an ON CONFLICT clause)."""
        ...

    def update_many(self, table: str, sets: Sequence[str], key: str, rows: Sequence[Any]) -> None:
        """UPDATE table SET sets (one ? each) WHERE key = ?, for each row: its values in order, the key last."""
        ...

    def for_each(self, sql: str, values: Sequence[Any]) -> None:
        """`sql`, which ends `= ?`, for each of `values`."""
        ...


class SqliteConnection(sqlite3.Connection):
    """sqlite3's connection, with FLOOR and new ids as PostgreSQL has them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.create_function("floor", 1, math.floor, deterministic=True)

    def new_ids(self, count: int) -> list[int]:
        # A write transaction holds SQLite's one write lock: the ids after the largest are free.
        first = self.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM files").fetchone()[0]
        return list(range(first, first + count))

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Any], tail: str = "") -> None:
        marks = ", ".join("?" * len(columns))
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){tail}", rows)

    def update_many(self, table: str, sets: Sequence[str], key: str, rows: Sequence[Any]) -> None:
        self.executemany(f"UPDATE {table} SET {', '.join(sets)} WHERE {key} = ?", rows)

    def for_each(self, sql: str, values: Sequence[Any]) -> None:
        self.executemany(sql, [(value,) for value in values])


class StoreBase:
    """What a store gives the operations written once over it (store.common, store.replays): its transactions,
    and for a fleet, paths kept relative to the data root and the fence."""

    instance: str
    where: str  # the store, as a message names it
    maps_paths = False  # True when _kept and _path change paths

    @contextlib.contextmanager
    def _transaction(self, durable: bool = False, snapshot: bool = False) -> Iterator[Db]:
        """One write transaction (`durable`: flushed before it returns), or a read-only `snapshot`."""
        raise NotImplementedError
        yield

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Db]:
        raise NotImplementedError
        yield

    def _kept(self, path: str) -> str:
        """A path as the store keeps it."""
        return path

    def _path(self, kept: str) -> str:
        """A path the store kept, as this host reaches it."""
        return kept

    def _fenced(self, db: Db) -> None:
        """Before copies are planned or published: StoreError when this instance may no longer (a fleet's)."""

    def fenced(self) -> bool:
        return False

    def close(self) -> None:
        raise NotImplementedError
