"""Running the schema's migrations at open: all that are due, in one transaction (SQLite's, PostgreSQL's)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from json_workflow.errors import StoreError
from json_workflow.logs import log
from json_workflow.store.schema import MIGRATIONS, Migration

MIGRATION_LOCK = 0x6A77_0001  # pg_advisory_xact_lock key: one instance upgrades the schema at a time


def migrate(db: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the schema to the last migration's version, in one transaction; returns the version found."""
    latest = migrations[-1].version
    found = _version(db)
    if found == latest:
        return found
    db.execute("BEGIN IMMEDIATE")
    try:
        found = _version(db)  # another connection may have upgraded it meanwhile
        if found > latest:
            raise StoreError(
                f"the journal {path} has schema version {found}, newer than this json-workflow knows ({latest}): "
                "run the version that made it, or a newer one"
            )
        for migration in migrations:
            if migration.version > found:
                _run(db, path, migration)
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (latest,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    if found:
        log.info("Upgraded the journal %s from schema version %d to %d", path, found, latest)
    return found


def _run(db: sqlite3.Connection, path: Path, migration: Migration) -> None:
    try:
        for statement in migration.sqlite:
            db.execute(statement)
    except sqlite3.Error as e:  # a bug of ours, not a damaged file: the journal is kept as it was
        raise StoreError(
            f"cannot upgrade the journal {path} to schema version {migration.version} ({migration.what}): {e}. "
            "It was left as it was; please report it"
        ) from e


def _version(db: sqlite3.Connection) -> int:
    """The schema version reached; 0 for a database made before versions (or a new one)."""
    if db.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'").fetchone() is None:
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate_postgresql(connection: Any, url: str, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the schema to the last version in one transaction, one instance at a time; returns the version found."""
    latest = migrations[-1].version
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        exists = connection.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
        found = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0 if exists else 0
        if found > latest:
            raise StoreError(
                f"the store {url} has schema version {found}, newer than this json-workflow knows ({latest}): "
                "run the version that made it, or a newer one"
            )
        for migration in migrations:
            if migration.version > found:
                for statement in migration.postgresql:
                    connection.execute(statement)
        if found < latest:
            connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            connection.execute("DELETE FROM schema_version")
            connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (latest,))
    return found
