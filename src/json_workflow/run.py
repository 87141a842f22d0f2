"""One run: the hot folder checked, the state folder's lock held, what a crash left finished, every file once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from json_workflow import durable
from json_workflow.config import Config
from json_workflow.delivery.model import Summary
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.delivery.processes import SHARED_FROM, backlog_reaches, process_shared
from json_workflow.errors import StoreError, WorkflowError
from json_workflow.intake import Source
from json_workflow.intake.scan import scan
from json_workflow.intake.stability import ignore_lease_breaks
from json_workflow.logs import log
from json_workflow.store import Store, open_store

if TYPE_CHECKING:
    from json_workflow.store.fleet import Membership


def check_hot_folder(config: Config) -> None:
    """Fail clearly when the hot folder is not there (a missing mount, a wrong root)."""
    try:
        with os.scandir(config.hot):
            pass
    except (FileNotFoundError, NotADirectoryError):
        raise WorkflowError(f"hot folder {config.hot} does not exist or is not a folder (paths.hot, root)") from None
    except OSError as e:  # a user that may not list it, a share that does not answer
        raise WorkflowError(f"hot folder {config.hot} cannot be read: {e.strerror} (paths.hot, root)") from None


LOCK = "run.lock"


def lock_holder(config: Config) -> int | None:
    """The pid holding the state folder's lock (a service or a run), from /proc/locks; None when none does.

    Read, never tried: taking the lock even for an instant could make a service starting then refuse to.
    """
    try:
        info = os.stat(config.state / LOCK)
        with open("/proc/locks") as f:
            table = f.read()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 9666 fe:00:2310153 0 EOF"; a waiting lock has "->" after the number
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device and fields[3] == "WRITE":
            return int(fields[4])
    return None


@contextlib.contextmanager
def exclusive(config: Config) -> Iterator[Store]:
    """Hold the state folder's lock (one instance per hot folder) and open the store."""
    try:
        durable.make_folder(config.state, config.permissions.dir_mode, config.root)
        lock = open(config.state / LOCK, "a")
    except OSError as e:
        raise WorkflowError(f"cannot use the state folder {config.state}: {e.strerror} (paths.state)") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkflowError(f"another json-workflow is processing {config.hot} (lock {lock.name})") from None
        store = open_store(config)
        try:
            yield store
        finally:
            store.close()


STORE_RETRY_SECONDS = 5.0
MIN_TRY_SECONDS = 2.0  # libpq's shortest connect timeout: a command tries again only when that much is left


@contextlib.contextmanager
def holding(
    config: Config, stopped: Callable[[], bool] = lambda: False, takes_over: bool = True, waits: bool = True
) -> Iterator[tuple[Store, Membership | None]]:
    """This instance's right to claim, and the store: the state folder's lock alone, or a fleet's membership.

    A fleet's store may be down when the service starts: it `waits` for it (the files wait in the hot folder).
    A command gives up after store.connect_timeout seconds with WorkflowError, saying why.
    """
    if not config.fleet:
        with exclusive(config) as store:
            yield store, None
        return
    settings = config.store
    give_up = None if waits else time.monotonic() + settings.connect_timeout
    membership: Membership | None = None

    def left() -> float:
        return settings.connect_timeout if give_up is None else give_up - time.monotonic()

    def again(why: Exception) -> None:
        """Wait before the next try; a command gives up, saying why, when no try fits in store.connect_timeout."""
        if left() < MIN_TRY_SECONDS:
            raise WorkflowError(
                f"gave up on the store after store.connect_timeout ({settings.connect_timeout:g}s): {why}"
            )
        pause(min(STORE_RETRY_SECONDS, left() - MIN_TRY_SECONDS), stopped)
        if membership is not None:
            membership.connect_timeout = left()  # the next try ends in time too

    while True:
        try:  # made or upgraded before the membership's tables are used
            store = open_store(config, "pipeline", connect_timeout=left())
            break
        except StoreError as e:
            if give_up is None:
                log.error("Cannot open the store yet, files wait in the hot folder (trying again): %s", e)
            again(e)
    from json_workflow.store.fleet import Membership  # psycopg: imported once a fleet's store opened

    membership = Membership(
        settings.url,
        settings.password(),
        config.instance,
        settings.lease_seconds,
        takes_over,
        left(),
        config.report_settings if waits else None,  # a command sends no report
    )
    try:
        membership.join(again)
        store.fence = membership.fence  # type: ignore[attr-defined]
        yield store, membership
    finally:
        store.close()
        membership.leave(area_empty=not os.path.lexists(config.claim_area))


def pause(seconds: float, stopped: Callable[[], bool]) -> None:
    """Wait, in short steps so that a stop (a flag a signal handler set) ends it; WorkflowError then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stopped():
            raise WorkflowError("stopped while waiting for the store")
        time.sleep(0.2)


def run_once(
    config: Config, progress: Callable[[int], None] | None = None, clock: Callable[[], float] = time.time
) -> Summary:
    """Finish whatever a crash left, then process everything in the hot folder once."""
    check_hot_folder(config)
    ignore_lease_breaks()  # here, in the main thread: the workers' lease checks rely on it
    # A run is too short to finish others' claims, and from cron it must never pile up waiting for a store.
    with holding(config, takes_over=False, waits=False) as (store, _):
        pipeline = Pipeline(config, store, clock)
        run = store.run_started("once", clock())
        try:
            summary = Summary()
            pipeline.recover(summary)
            processes = config.process_count
            if processes > 1 and backlog_reaches(config.hot, SHARED_FROM):
                return process_shared(config, store, pipeline, processes, progress, summary)
            startup = Source.STARTUP  # looked up once, not per file
            return pipeline.process(((candidate, startup) for candidate in scan(config.hot)), progress, summary)
        finally:
            pipeline.close()
            pipeline.claims.tidy()
            store.run_stopped(run, clock())
