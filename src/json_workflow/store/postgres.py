"""The PostgreSQL store: one database shared by a fleet of instances on one data root.

The statements are the SQLite store's (store.common), with `?` turned into psycopg's `%s`. Paths are
kept relative to the data root, since each host may mount the share elsewhere. A lost connection is
made again at the next operation; meanwhile every operation fails with StoreError and the files wait.
Before copies are planned or published the store checks the fence (store.fleet): an instance whose
claim area another took over plans and publishes nothing more.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from json_workflow.errors import StoreError, WorkflowError
from json_workflow.names import shown, unshown
from json_workflow.store.common import SqlStore
from json_workflow.store.migrate import migrate_postgresql
from json_workflow.store.schema import MIGRATIONS, Migration

try:
    import psycopg
    from psycopg.types.numeric import FloatLoader
except ImportError:  # pragma: no cover - the extra is part of every install that names a URL
    psycopg = None  # type: ignore[assignment]

STATEMENT_TIMEOUT_MS = 30_000  # a statement that takes longer is a store in trouble: the files wait
WATCH_GRACE_SECONDS = 5.0  # past the statement timeout, the server is not answering at all: the client ends it
RECONNECT_SECONDS = 5.0  # after a failed connection, operations fail at once for this long


@functools.lru_cache(maxsize=512)
def _dialect(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection as the store's SQL modules use one (store.sql.Db)."""

    def __init__(self, connection: Any, types: dict[str, dict[str, str]]):
        self.connection = connection
        self.types = types  # table -> column -> type, read once per store (unnest's arrays are typed)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.connection.execute(_dialect(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        cursor = self.connection.cursor()
        cursor.executemany(_dialect(sql), list(parameters))
        return cursor

    def for_each(self, sql: str, values: Sequence[Any]) -> None:
        if values:  # one statement over an array: `= ANY(?)`
            self.connection.execute(_dialect(sql[: -len("?")] + "ANY(?)"), (list(values),))

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Any], tail: str = "") -> None:
        if rows:
            arrays = ", ".join(f"%b::{self._type(table, column)}[]" for column in columns)
            sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}){_dialect(tail)}"
            self.connection.execute(sql, [list(column) for column in zip(*rows, strict=True)])

    def update_many(self, table: str, sets: Sequence[str], key: str, rows: Sequence[Any]) -> None:
        if rows:
            names = [f"v{i}" for i in range(len(sets))]
            targets = [assignment.split(" = ")[0] for assignment in sets]
            arrays = ", ".join(f"%b::{self._type(table, column)}[]" for column in (*targets, key))
            assignments = ", ".join(a.replace("?", f"v.{n}") for a, n in zip(sets, names, strict=True))
            self.connection.execute(
                f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({', '.join(names)}, k)"
                f" WHERE {table}.{key} = v.k",
                [list(column) for column in zip(*rows, strict=True)],
            )

    def _type(self, table: str, column: str) -> str:
        if table not in self.types:
            self.types[table] = dict(
                self.connection.execute(
                    "SELECT column_name, udt_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = %s",
                    (table,),
                ).fetchall()
            )
        return str(self.types[table][column])

    def new_ids(self, count: int) -> list[int]:
        if not count:
            return []
        rows = self.connection.execute(
            "SELECT nextval(pg_get_serial_sequence('files', 'id')) FROM generate_series(1, %s)", (count,)
        )
        return [row[0] for row in rows]


def advisory_key(name: str) -> int:
    """A session's advisory lock (an instance's, a command's): a signed 64-bit number from its name."""
    return int.from_bytes(hashlib.blake2b(f"json-workflow {name}".encode(), digest_size=8).digest(), signed=True)


CONNECT_SECONDS = 5  # one attempt to connect; a command tries again until store.connect_timeout


def connect(
    url: str, password: str | None, instance: str, purpose: str, lock_timeout_ms: int = 0, timeout: float = 30
) -> Any:
    """A new autocommit connection; StoreError naming the store (never its password) when it fails."""
    installed()
    try:
        connection = psycopg.connect(
            url,
            password=password,
            autocommit=True,
            connect_timeout=max(2, int(min(CONNECT_SECONDS, timeout))),  # libpq waits at least 2 s
            application_name=f"json-workflow {instance} {purpose}"[:63],
            # A host that vanished is noticed within half a minute, not the kernel's two hours.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=30_000,
            # A command waits for an answer no longer than store.connect_timeout; the service, half a minute.
            options=f"-c statement_timeout={min(STATEMENT_TIMEOUT_MS, int(timeout * 1000))}"
            f" -c lock_timeout={lock_timeout_ms}",
        )
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to the store {url}: {_words(e)}") from None
    connection.adapters.register_loader("numeric", FloatLoader)  # AVG and SUM of integers: floats, as SQLite's
    return connection


class Watch:
    """Cuts a connection whose operation outlasts its statement timeout by WATCH_GRACE_SECONDS: a server that
    stops answering (frozen, stuck on its disk) never enforces statement_timeout, and nothing may wait for ever."""

    def __init__(self, name: str, timeout: float):
        self.name, self.late = name, timeout + WATCH_GRACE_SECONDS
        self._busy = 0.0  # when the operation in progress began (monotonic); 0: none
        self._connection: Callable[[], Any] = lambda: None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @contextlib.contextmanager
    def on(self, connection: Callable[[], Any]) -> Iterator[None]:
        """Watch the operation inside, on the connection `connection()` gives when it is late."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watching, name=self.name, daemon=True)
            self._thread.start()
        self._connection, self._busy = connection, time.monotonic()
        try:
            yield
        finally:
            self._busy = 0.0

    def close(self) -> None:
        self._closed.set()

    def _watching(self) -> None:
        while not self._closed.wait(1.0):
            busy, connection = self._busy, self._connection()
            if busy and time.monotonic() - busy > self.late and connection is not None:
                with contextlib.suppress(Exception):  # shut down, not closed: the descriptor is psycopg's
                    cut = socket.socket(fileno=os.dup(connection.fileno()))
                    cut.shutdown(socket.SHUT_RDWR)
                    cut.close()


def installed() -> None:
    """WorkflowError unless psycopg is installed: not a store that is down, waiting would not mend it."""
    if psycopg is None:
        raise WorkflowError(
            "store.url names PostgreSQL, but psycopg is not installed: pip install 'json-workflow[postgresql]'"
        )


def kept_path(root: str, path: str) -> str:
    """A path as a fleet's store keeps it: relative to the data root (`root` ends with a slash), printable."""
    return shown(path[len(root) :] if path.startswith(root) else path)


def _words(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class PgStore(SqlStore):
    """The store in a PostgreSQL database, made or upgraded to the last schema version when opened."""

    maps_paths = True

    def __init__(
        self,
        url: str,
        password: str | None,
        instance: str,
        root: Path,
        purpose: str = "store",
        migrations: Sequence[Migration] = MIGRATIONS,
        connect_timeout: float = 30,
    ):
        installed()
        self.url, self.where, self.instance = url, url, instance
        self._password, self._purpose, self._connect_timeout = password, purpose, connect_timeout
        self._root = str(root).rstrip(os.sep) + os.sep
        self._lock = threading.Lock()
        self._attempted = _Everything()
        self.fence: Any = None  # store.fleet.Fence, when this store plans and publishes copies
        self._connection: Any = None
        self._types: dict[str, dict[str, str]] = {}
        self._watch = Watch(f"watch {purpose}", min(STATEMENT_TIMEOUT_MS / 1000, connect_timeout))
        self._down: tuple[float, StoreError] | None = None  # the last failed connection: until when it stands
        with self._lock, self._raised():
            migrate_postgresql(self._connected(), url, migrations)

    def close(self) -> None:
        self._watch.close()
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _connected(self) -> Any:
        if self._connection is None or self._connection.closed:
            # A store that just refused a connection is not asked again for a few seconds: a batch's many
            # operations would each wait for it (the service tries again later; a command ends sooner).
            if self._down is not None and time.monotonic() < self._down[0]:
                raise self._down[1]
            try:
                self._connection = connect(
                    self.url, self._password, self.instance, self._purpose, timeout=self._connect_timeout
                )
            except StoreError as e:
                self._down = (time.monotonic() + RECONNECT_SECONDS, e)
                raise
            self._down = None
        return self._connection

    @contextlib.contextmanager
    def _raised(self) -> Iterator[None]:
        """psycopg's errors leave as StoreError; a broken connection is made again at the next operation.

        The operation is watched (Watch): a server that stops answering is left, and the operation fails.
        """
        try:
            with self._watch.on(lambda: self._connection):
                yield
        except psycopg.Error as e:
            if self._connection is not None and (self._connection.broken or self._connection.closed):
                with contextlib.suppress(Exception):
                    self._connection.close()
                self._connection = None
            raise StoreError(f"{self.url}: {_words(e)}") from e

    @contextlib.contextmanager
    def _transaction(self, durable: bool = False, snapshot: bool = False) -> Iterator[PgConnection]:
        # Every commit is durable in PostgreSQL (synchronous_commit); a snapshot sees one point in time.
        with self._lock, self._raised():
            connection = self._connected()
            with connection.transaction():
                if snapshot:
                    connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield PgConnection(connection, self._types)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[PgConnection]:
        with self._lock, self._raised():
            yield PgConnection(self._connected(), self._types)

    def _fenced(self, db: Any) -> None:
        if self.fence is not None:
            self.fence.check(db, self.instance)

    def fenced(self) -> bool:
        if self.fence is None:
            return False
        for _ in range(2):  # a session the taker ended fails once (and is dropped): a new one tells
            if self.fence.lost is not None:
                break
            try:
                with self._reading() as db:
                    self.fence.check(db, self.instance, held=False)
                break
            except StoreError:  # Fenced sets `lost`; a store that is down tells nothing
                if self._connection is not None:
                    break
        return self.fence.lost is not None

    def _kept(self, path: str) -> str:
        return kept_path(self._root, path)

    def _path(self, kept: str) -> str:
        path = unshown(kept)
        return path if path.startswith(os.sep) or "://" in path else self._root + path  # a URL is no path

    def exclusive(self, what: str) -> bool:
        with self._reading() as db:  # a session lock: freed when this store's connection closes
            return bool(db.execute("SELECT pg_try_advisory_lock(?)", (advisory_key(f"lock {what}"),)).fetchone()[0])

    def check_writable(self) -> None:
        with self._transaction() as db:
            db.execute("SELECT 1")

    def now(self) -> float:
        """The store's clock: the one every instance of the fleet reads."""
        with self._reading() as db:
            return float(db.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])


class _Everything(set[str]):
    """Any claim may have a restart count: another instance may have counted it."""

    def __contains__(self, item: object) -> bool:
        return True

    def __bool__(self) -> bool:
        return True
