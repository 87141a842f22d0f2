"""The store: the journal of copies, the statistics, the reports sent and the alert state, behind one seam.

`Store` (store.api) is the interface, made of named operations on plain rows (store.rows); every SQL
statement is in this package, the one schema in store.schema. SQLite is the embedded default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from json_workflow.store.api import Store
from json_workflow.store.sqlite import DATABASE, SqliteStore

if TYPE_CHECKING:
    from json_workflow.config import Config

__all__ = ["DATABASE", "SqliteStore", "Store", "has_store", "open_store"]


def has_store(config: Config) -> bool:
    """Whether anything ran on this root yet (a fleet's store is always there to ask)."""
    return config.fleet or (config.state / DATABASE).is_file()


def no_statistics(config: Config) -> str:
    """What to say when `has_store` is False."""
    return f"no statistics yet: {config.state / DATABASE} does not exist (nothing has run on this root)"


def open_store(config: Config, purpose: str = "store", connect_timeout: float | None = None) -> Store:
    """The configured store, made or upgraded to the current schema; StoreError naming it when it cannot be read.

    `purpose` names the connection in PostgreSQL's pg_stat_activity (pipeline, reporter, web, a command);
    `connect_timeout` (default store.connect_timeout) bounds its connecting.
    """
    if config.fleet:
        from json_workflow.store.postgres import PgStore  # psycopg is only imported by a fleet

        settings = config.store
        return PgStore(
            settings.url, settings.password(), config.instance, config.root, purpose,
            connect_timeout=connect_timeout or settings.connect_timeout,
        )  # fmt: skip
    # Waiting for another process's write lock is waiting for the store: bounded like a connection.
    return SqliteStore(config.state, instance=config.instance, busy_seconds=min(10.0, config.store.connect_timeout))
