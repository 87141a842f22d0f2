"""Several instances on one data root (PostgreSQL): each proves it is alive, the living take over the dead.

Liveness is both a session-level advisory lock and a lease, held on a connection of their own:

- the lock, keyed by the instance's name, is freed by PostgreSQL the moment the session ends (a killed
  process, a closed connection), and makes a second process of the same name refuse to start. Alone it
  cannot tell a hung process from a working one, and a host cut off keeps it until keepalives give up;
- the lease (`instances.beat`, by the store's clock so that hosts' clocks do not matter, renewed six
  times per store.lease_seconds) says the process still works. Alone it could be taken from a process
  merely slow to renew.

An instance is taken over when its lease is store.lease_seconds stale and its lock can be had; when its
lock is still held half as long again (a hung process, a half-open connection), that session is ended
first. Fencing: each start and each takeover raises the instance's epoch, and every plan and
publication checks it in its own transaction (Fence.check): an instance that was taken over plans and
publishes nothing more, and leaves the claims to the one that took them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from json_workflow.errors import Fenced, StoreError, WorkflowError
from json_workflow.logs import log
from json_workflow.store.postgres import Watch, advisory_key, connect

NOW = "EXTRACT(EPOCH FROM clock_timestamp())"  # the store's clock, the one all hosts read


class Fence:
    """What the pipeline's store checks, in the transaction that plans or publishes copies."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.held = threading.Event()  # the lease is held and renewed now
        self.lost: str | None = None  # why this instance may never publish again (until it restarts)

    def check(self, db: Any, instance: str, held: bool = True) -> None:
        """Fenced unless this instance's epoch is the store's (`held`: and its lease is held, the row locked)."""
        if self.lost is not None:
            raise Fenced(self.lost)
        if held and not self.held.is_set():
            raise StoreError(f"instance {instance} is renewing its lease (its connection to the store was lost)")
        lock = " FOR SHARE" if held else ""
        row = db.execute(f"SELECT epoch, taken_by FROM instances WHERE name = ?{lock}", (instance,)).fetchone()
        if row is None or row[0] != self.epoch:
            raise Fenced(self.lose(instance, row[1] if row else None))

    def lose(self, instance: str, taker: str | None) -> str:
        """This instance was taken over: it may never publish again (until it restarts). Says so, once."""
        if self.lost is None:
            self.held.clear()
            self.lost = (
                f"instance {instance} was taken over by {taker or 'another instance'}, which finishes its claims"
            )
        return self.lost


class Membership:
    """This instance's lease and lock, renewed in a thread; the dead instances it found, to be taken over."""

    def __init__(
        self,
        url: str,
        password: str | None,
        instance: str,
        lease: float = 30.0,
        takes_over: bool = True,
        connect_timeout: float = 30.0,
        report: dict[str, Any] | None = None,
    ):
        self.url, self.password, self.instance, self.connect_timeout = url, password, instance, connect_timeout
        self.report = report  # its report settings (Config.report_settings); None: it sends none (`run --once`)
        self._report_pending = False  # changed by a reload, not yet written
        self.takes_over = takes_over  # a service does; a `run --once` leaves the dead to the services
        self.lease, self.beat, self.terminate = lease, lease / 6, lease * 1.5
        self.fence = Fence()
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.found: list[str] = []  # dead instances whose lock this one holds, for the main loop to take over
        self._taking: set[str] = set()
        self._held_since = 0.0  # monotonic: others are judged only after a lease of one's own (an outage ends for all)
        self._lock = threading.Lock()  # the connection: the thread renews, the main loop finishes takeovers
        self._watch = Watch(f"watch {instance} lease", connect_timeout)  # a frozen store holds nothing for ever
        self._connection: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- joining and leaving --------------------------------------------------------------------------
    def join(self, again: Callable[[Exception], None]) -> None:
        """Hold this instance's lock and lease, calling `again` with why not between tries (it may give up by
        raising); WorkflowError when the name runs elsewhere."""
        while (why := self._try_join()) is not None:
            again(why)
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._thread.start()

    def _try_join(self) -> Exception | None:
        """None when joined; else why not: the store's error, or a peer taking this instance over."""
        try:
            with self._lock, self._watch.on(lambda: self._connection):
                db = self._connected()
                if not db.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key(self.instance),)).fetchone()[0]:
                    return self._held_elsewhere(db)
                self.fence.epoch = db.execute(
                    "INSERT INTO instances (name, host, pid, started, beat, epoch, report) VALUES"
                    f" (%s, %s, %s, {NOW}, {NOW}, 1, %s) ON CONFLICT (name) DO UPDATE SET host = excluded.host,"
                    " pid = excluded.pid, started = excluded.started, beat = excluded.beat,"
                    " epoch = instances.epoch + 1, report = excluded.report RETURNING epoch",
                    (self.instance, self.host, self.pid, None if self.report is None else json.dumps(self.report)),
                ).fetchone()[0]
        except (StoreError, psycopg.Error) as e:  # the store is down, or went away mid-way
            log.error("Cannot join the fleet yet, files wait in the hot folder: %s", e)
            self._drop_connection()
            return e
        self._hold()
        log.info("Joined the fleet as instance %s (epoch %d)", self.instance, self.fence.epoch)
        return None

    def _held_elsewhere(self, db: Any) -> Exception:
        """This name's lock is held: by a live process of that name (refused), a peer taking it over, or a ghost."""
        row = db.execute(f"SELECT host, pid, {NOW} - beat FROM instances WHERE name = %s", (self.instance,)).fetchone()
        if row is not None and row[2] < self.lease:
            host, pid, _ = row
            raise WorkflowError(
                f"instance {self.instance} is already running on {host} (pid {pid}); give each host its own "
                "`instance` in the configuration"
            )
        holder = _lock_holder(db, self.instance)
        if holder is not None and holder[1].startswith(f"json-workflow {self.instance} ") and row is not None:
            if row[2] > self.terminate:  # a session of this instance's last process, still open on the server
                db.execute("SELECT pg_terminate_backend(%s)", (holder[0],))
                log.warning("Ended a session left open by the previous process of instance %s", self.instance)
                return WorkflowError(f"a session of instance {self.instance}'s previous process was ended")
        log.info("Instance %s's claim area is being taken over by another instance; waiting for it", self.instance)
        return WorkflowError(f"instance {self.instance}'s claim area is being taken over by another instance")

    def leave(self, area_empty: bool) -> None:
        """Stop renewing; a clean stop with nothing left claimed needs no takeover."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # a renewal takes milliseconds; one the store does not answer is left
        if not self._lock.acquire(timeout=1.0):
            return  # the lease thread waits for a store that does not answer: the process ends, its session too
        try:
            with self._watch.on(lambda: self._connection), contextlib.suppress(Exception):
                if area_empty and self.fence.lost is None and self._connection is not None:
                    self._connection.execute(
                        "UPDATE instances SET taken = beat, taken_by = name WHERE name = %s AND epoch = %s",
                        (self.instance, self.fence.epoch),
                    )
        finally:
            self._lock.release()
        self._watch.close()
        self._drop_connection()

    # --- the lease ------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.beat):
            try:
                with self._lock, self._watch.on(lambda: self._connection):
                    db = self._connected()
                    if not self.fence.held.is_set() and not self._relock(db):
                        continue
                    self._renew(db)
                    # After an outage every lease is stale: the others get a lease's time to renew theirs.
                    if self.takes_over and time.monotonic() - self._held_since >= self.lease:
                        self._look_for_the_dead(db)
            except psycopg.errors.LockNotAvailable as e:  # a row another session holds: tried again next beat
                log.warning("Lease: a row is locked by another session, trying again: %s", e)
            except Exception as e:  # the store went away: nothing is published until the lease is held again
                held = self.fence.held.is_set()
                self.fence.held.clear()
                self._drop_connection()
                if held and not self._taken_over_meanwhile():  # a taken-over instance says so once, elsewhere
                    log.error("Lost the store's connection; files wait until the lease is held again: %s", e)

    def _taken_over_meanwhile(self) -> bool:
        """After a lost connection, one quick look: was this instance taken over (a hung process, woken)?"""
        try:
            with self._lock:
                row = (
                    self._connected()
                    .execute("SELECT epoch, taken_by FROM instances WHERE name = %s", (self.instance,))
                    .fetchone()
                )
        except Exception:  # still unreachable: a lost connection indeed
            self._drop_connection()
            return False
        if row is not None and row[0] == self.fence.epoch:
            return False
        self.fence.lose(self.instance, row[1] if row else None)
        return True

    def _relock(self, db: Any) -> bool:
        """After a lost connection: the lock again, and the same epoch (else this instance was taken over)."""
        if not db.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key(self.instance),)).fetchone()[0]:
            return False
        row = db.execute("SELECT epoch, taken_by FROM instances WHERE name = %s", (self.instance,)).fetchone()
        if row is None or row[0] != self.fence.epoch:
            self.fence.lose(self.instance, row[1] if row else None)
            return False
        self._hold()
        log.info("Holding the lease of instance %s again; files flow", self.instance)
        return True

    def _hold(self) -> None:
        self._held_since = time.monotonic()
        self.fence.held.set()

    def report_changed(self, report: dict[str, Any]) -> None:
        """A reload changed this instance's report settings: the others see them from the next renewal on."""
        self.report, self._report_pending = report, True

    def _renew(self, db: Any) -> None:
        report, self._report_pending = json.dumps(self.report) if self._report_pending else None, False
        renewed = db.execute(
            f"UPDATE instances SET beat = {NOW}, report = COALESCE(%s, report) WHERE name = %s AND epoch = %s"
            " RETURNING 1",
            (report, self.instance, self.fence.epoch),
        ).fetchone()
        if renewed is None:
            taker = db.execute("SELECT taken_by FROM instances WHERE name = %s", (self.instance,)).fetchone()
            self.fence.lose(self.instance, taker[0] if taker else None)

    def _look_for_the_dead(self, db: Any) -> None:
        stale = db.execute(
            f"SELECT name, {NOW} - beat FROM instances WHERE name <> %s AND beat < {NOW} - %s"
            " AND (taken IS NULL OR taken < beat) ORDER BY name",
            (self.instance, self.lease),
        ).fetchall()
        for name, age in stale:
            if name in self._taking:
                continue
            if not db.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key(name),)).fetchone()[0]:
                if age > self.terminate and _end_sessions(db, name):
                    log.warning(
                        "Instance %s renews nothing for %.0fs but holds its lock: ended its sessions", name, age
                    )
                continue
            # A session of it still open (a hung process, its lease's connection lost) may hold its row in a
            # transaction: ended first, the row is free and the publication it was about to check is refused.
            _end_sessions(db, name)
            try:
                taken = db.execute(
                    f"UPDATE instances SET epoch = epoch + 1, taken_by = %s WHERE name = %s AND beat < {NOW} - %s"
                    " RETURNING epoch",
                    (self.instance, name, self.lease),
                ).fetchone()
            except psycopg.errors.LockNotAvailable:
                taken = None
            if taken is None:  # it came back meanwhile (or its row is still locked: next beat)
                db.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(name),))
                continue
            log.warning("Instance %s stopped renewing its lease %.0fs ago; taking over its claim area", name, age)
            self._taking.add(name)
            self.found.append(name)

    def taken_over(self, name: str) -> None:
        """The main loop finished taking over `name`'s claim area: say so, and let `name` start again."""
        with self._lock:
            self._taking.discard(name)
            with contextlib.suppress(Exception):
                db = self._connected()
                db.execute(f"UPDATE instances SET taken = {NOW} WHERE name = %s", (name,))
                db.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(name),))

    # --- the connection -------------------------------------------------------------------------------
    def _connected(self) -> Any:
        if self._connection is None or self._connection.closed:
            # Never wait long for a row: the lease is renewed on this connection.
            self._connection = connect(
                self.url, self.password, self.instance, "lease", int(self.beat * 500), self.connect_timeout
            )
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
            self._taking.clear()  # their locks went with the session: another may take them over


def _end_sessions(db: Any, instance: str) -> int:
    """pg_terminate_backend every session of `instance` (its connections are named after it); how many."""
    return len(
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE starts_with(application_name, %s) AND pid <> pg_backend_pid()",
            (f"json-workflow {instance} ",),
        ).fetchall()
    )


def _lock_holder(db: Any, instance: str) -> tuple[int, str] | None:
    """(pid, application_name) of the session holding `instance`'s advisory lock."""
    key = advisory_key(instance)
    return db.execute(
        "SELECT a.pid, COALESCE(a.application_name, '') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s"
        " AND l.objsubid = 1",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
