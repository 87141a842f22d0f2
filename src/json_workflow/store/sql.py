"""What the store's SQL modules ask of a connection: SQLite's (below) and PostgreSQL's (store.postgres) give it.

The statements themselves are written once, in the dialect both understand: `?` marks, ON CONFLICT,
RETURNING, CASE instead of summed booleans, FLOOR (registered on SQLite when it lacks it).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol


class Db(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any: ...

    def new_ids(self, count: int) -> list[int]:
        """Ids for `count` new file rows (inside the transaction that inserts them)."""
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
