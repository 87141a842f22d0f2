"""/healthz and /readyz: is the main loop alive, and can files be taken now.

Liveness checks nothing outside the process (a hung share must not get the service restarted in a
loop); readiness checks what files need: the hot folder, the store, the watcher. A destination in
trouble only degrades it: files wait for it in the hot folder, nothing is lost.
"""

from __future__ import annotations

from typing import Any

from json_workflow.config import Config
from json_workflow.errors import StoreError, WorkflowError
from json_workflow.monitor.state import Live
from json_workflow.plural import count
from json_workflow.run import check_hot_folder
from json_workflow.store import Store

# The main loop turns at least once a second; this long without a turn, it is stuck (a hung mount, say).
HEARTBEAT_LIMIT = 60.0
OK, DEGRADED, FAILING = "ok", "degraded", "failing"


def alive(live: Live, now: float) -> bool:
    return now - live.beat <= HEARTBEAT_LIMIT


def readiness(config: Config, live: Live | None, store: Store, now: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body): 503 when files cannot be taken, 200 (maybe degraded) otherwise."""
    checks: dict[str, dict[str, Any]] = {
        "hot_folder": _hot_folder(config),
        "store": _store(store),
    }
    if live is not None:
        checks["main_loop"] = (
            _check(OK, "turning")
            if alive(live, now)
            else _check(FAILING, f"no turn for {now - live.beat:.0f}s (limit {HEARTBEAT_LIMIT:.0f}s)")
        )
        checks["watcher"] = (
            _check(OK, f"{live.watch} watch alive")
            if live.watcher_alive
            else _check(FAILING, f"{live.watch} watch stopped")
        )
        trouble = live.in_trouble
        checks["destinations"] = _check(
            DEGRADED if trouble else OK,
            "; ".join(d.error for d in trouble) or f"{count(len(live.destinations), 'destination')} writable",
            in_trouble=[{"folder": d.folder, "rules": d.rules, "since": d.since, "error": d.error} for d in trouble],
        )
    else:
        checks["service"] = _check(OK, "no service runs on this root: files are taken by `run --once`")
    states = {c["status"] for c in checks.values()}
    overall = FAILING if FAILING in states else DEGRADED if DEGRADED in states else OK
    return (503 if overall == FAILING else 200), {"status": overall, "checks": checks}


def _hot_folder(config: Config) -> dict[str, Any]:
    try:
        check_hot_folder(config)  # opened, not read: a check, not a scan
    except WorkflowError as e:
        return _check(FAILING, str(e))
    return _check(OK, f"{config.hot} readable")


def _store(store: Store) -> dict[str, Any]:
    try:
        store.check_writable()
    except StoreError as e:
        return _check(FAILING, str(e))
    return _check(OK, "writable")


def _check(status: str, detail: str, **more: Any) -> dict[str, Any]:
    return {"status": status, "detail": detail, **more}
