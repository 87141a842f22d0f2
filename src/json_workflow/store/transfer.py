"""Moving one host's SQLite store into PostgreSQL, for a fleet: `json-workflow store migrate --to URL`.

The statistics, the file history, the reports sent, the alert state and what `replay --apply` delivered
are copied as they are, paths
made relative to the data root as a fleet's store keeps them. Nothing is copied while a file is in
flight (a claim or a journal entry left by a crash): the journal would point at a claim area the fleet
does not use. The SQLite store is left as it was.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from json_workflow.config import Config
from json_workflow.errors import StoreError
from json_workflow.names import from_store
from json_workflow.plural import count, plural
from json_workflow.store.postgres import PgStore, connect, kept_path
from json_workflow.store.sqlite import DATABASE

Row = tuple[Any, ...]

# table: (columns, the indexes of the columns holding paths); copied in this order (files before routed).
TABLES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "files": (
        (
            "id", "received", "name", "client", "source", "inode", "claim", "outcome", "finished", "seconds",
            "category", "studio", "title", "stage", "reason", "job", "failed_as", "retried", "instance",
        ),
        (6, 16),
    ),
    "routed": (("file", "rule", "folder"), (2,)),
    "batches": (("at", "size", "seconds"), ()),
    "scans": (("at", "outcome", "seconds", "found", "slow"), ()),
    "troubles": (("at", "folder", "error"), (1,)),
    "runs": (("id", "started", "stopped", "mode", "instance"), ()),
    "reports": (("day", "sent", "delivery"), ()),
    "settings": (("key", "value"), ()),
    "replayed": (("source", "digest", "final", "temp", "rules", "state"), (0, 2, 3)),
    "sent": (("key", "file", "rule", "url", "status", "at"), ()),  # what endpoints acknowledged: sent no more
}  # fmt: skip


def to_postgresql(config: Config, url: str, password: str | None) -> dict[str, int]:
    """Copy the SQLite store of `config` (whose lock the caller holds) into the empty store at `url`; rows per table."""
    source = config.state / DATABASE
    target = PgStore(url, password, config.instance, config.root, "migrate")  # made at the current schema version
    target.close()
    with (
        contextlib.closing(sqlite3.connect(source)) as db,
        contextlib.closing(connect(url, password, config.instance, "migrate")) as pg,
    ):
        unfinished = db.execute("SELECT COUNT(DISTINCT claim) FROM copies").fetchone()[0]
        if unfinished:
            raise StoreError(
                f"{count(unfinished, 'file')} of {source} {plural(unfinished, 'is')} in flight (a crash left them): "
                "run `json-workflow run --once` to finish them, then migrate"
            )
        held = pg.execute("SELECT (SELECT COUNT(*) FROM files) + (SELECT COUNT(*) FROM reports)").fetchone()[0]
        if held:
            raise StoreError(
                f"the store {url} already holds statistics ({count(held, 'row')}): migrate into an empty database"
            )
        kept = functools.partial(kept_path, str(config.root).rstrip(os.sep) + os.sep)
        copied = {}
        with pg.transaction():
            for table, (columns, paths) in TABLES.items():
                rows = (_row(row, paths, kept) for row in db.execute(f"SELECT {', '.join(columns)} FROM {table}"))
                copied[table] = _copy(pg, table, columns, rows)
            for table in ("files", "runs"):  # the next ids follow the copied ones
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                pg.execute(f"SELECT setval({sequence}, COALESCE(MAX(id), 0) + 1, false) FROM {table}")
    return copied


def _copy(pg: Any, table: str, columns: tuple[str, ...], rows: Iterator[Row]) -> int:
    count = 0
    with pg.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _row(row: Row, paths: tuple[int, ...], kept: Callable[[str], str]) -> Row:
    if not paths:
        return row
    values = list(row)
    for i in paths:
        if values[i] is not None:
            values[i] = kept(from_store(values[i]))
    return tuple(values)
