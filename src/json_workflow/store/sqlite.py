"""The SQLite store, the embedded default: one file in the state folder, WAL, one connection per user.

The pipeline's threads share one store (its connection behind a lock); the reporter and the commands
open their own. Commits are not flushed one by one (synchronous=NORMAL): the operations that must survive a power
cut (copies staged before they are published; the reporter's writes, as before) ask for a flush.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from json_workflow.errors import StoreError
from json_workflow.settings import default_instance
from json_workflow.store import journal
from json_workflow.store.common import SqlStore
from json_workflow.store.migrate import migrate
from json_workflow.store.schema import MIGRATIONS, Migration
from json_workflow.store.sql import SqliteConnection

DATABASE = "journal.sqlite3"
BUSY_TIMEOUT_MS = 10_000  # the pipeline, the reporter, the web and the commands each have a connection
CHECK_TIMEOUT_MS = 2_000
# Pauses between asks for the write lock held by another connection: from a tenth of a millisecond, doubled up to 2 ms.
BUSY_FIRST_PAUSE, BUSY_LONGEST_PAUSE = 0.0001, 0.002


def unreadable(path: Path, error: sqlite3.Error) -> StoreError:
    """What to do about a journal that SQLite cannot read (damaged, or not a database at all)."""
    return StoreError(
        f"cannot read the journal {path}: {error}. It is damaged or not a SQLite database. Stop json-workflow, "
        f"move the file aside (sqlite3's .recover may rescue its statistics) and start again: a new journal is "
        f"made, and files left in the claim area are processed again from the start"
    )


class SqliteStore(SqlStore):
    """The store in `folder`/journal.sqlite3, made or upgraded to the last schema version when opened."""

    def __init__(
        self,
        folder: Path,
        migrations: Sequence[Migration] = MIGRATIONS,
        instance: str | None = None,
        busy_seconds: float = BUSY_TIMEOUT_MS / 1000,
    ):
        self.path = folder / DATABASE
        self.where = str(self.path)
        self.instance = instance or default_instance()
        self._lock = threading.Lock()
        self._held: list[IO[str]] = []  # lock files held (exclusive), until the store is closed
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, factory=SqliteConnection)
        try:
            # The pipeline, the reporter and the commands each have a connection; wait for each other.
            self._busy_ms = int(busy_seconds * 1000)
            self._db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate(self._db, self.path, migrations)
            self._attempted = journal.attempted(self._db)
        except sqlite3.DatabaseError as e:
            self._db.close()
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):  # busy, not damaged
                raise StoreError(f"{self.path}: {e} by another process (waited {busy_seconds:g}s)") from None
            raise unreadable(self.path, e) from None
        except StoreError:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
        for held in self._held:  # its flock goes with it
            held.close()

    def exclusive(self, what: str) -> bool:
        held = open(self.path.parent / f"{what}.lock", "a")  # noqa: SIM115 - kept open until the store closes
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.close()
            return False
        self._held.append(held)
        return True

    @contextlib.contextmanager
    def _transaction(self, durable: bool = False, snapshot: bool = False) -> Iterator[SqliteConnection]:
        """FULL synchronous flushes a durable commit before it returns; a deferred BEGIN only reads."""
        with self._lock, _raised_as_store_error(self.path):
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            if snapshot:
                self._db.execute("BEGIN")
            else:
                self._begin_immediate()
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def _begin_immediate(self) -> None:
        """The write lock, asked for again every fraction of a millisecond while another connection holds it,
        up to the busy timeout. SQLite's own waits (1, 2, 5, 10 ms ...) are many times longer than a batch holds
        the lock, and worker processes sharing one journal lost a fifth of their time in them."""
        self._db.execute("PRAGMA busy_timeout=0")
        try:
            deadline, pause = time.monotonic() + self._busy_ms / 1000, BUSY_FIRST_PAUSE
            while True:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() >= deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, BUSY_LONGEST_PAUSE)
        finally:
            self._db.execute(f"PRAGMA busy_timeout={self._busy_ms}")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[SqliteConnection]:
        with self._lock, _raised_as_store_error(self.path):
            yield self._db

    def check_writable(self) -> None:
        # The write lock taken and given back: what a batch needs first, without writing anything. A
        # health check answers within seconds: a lock held longer than that is trouble worth reporting.
        with self._lock:
            busy, self._busy_ms = self._busy_ms, CHECK_TIMEOUT_MS
        try:
            with self._transaction():
                pass
        finally:
            with self._lock:
                self._busy_ms = busy
                self._db.execute(f"PRAGMA busy_timeout={busy}")


@contextlib.contextmanager
def _raised_as_store_error(path: Path) -> Iterator[None]:
    """SQLite's errors leave as StoreError, with SQLite's words and the journal's name."""
    try:
        yield
    except sqlite3.OperationalError as e:
        busy = "locked" in str(e)  # another process holds the write lock (a json-workflow, a sqlite3 shell)
        raise StoreError(f"{path}: {e}" + (" by another process" if busy else "")) from e
    except sqlite3.Error as e:
        raise StoreError(f"{path}: {e}") from e
