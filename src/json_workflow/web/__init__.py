"""The dashboard, /metrics and the health checks: served by the service, or alone by `json-workflow dashboard`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from json_workflow import logs
from json_workflow.config import Config
from json_workflow.errors import StoreError, WorkflowError
from json_workflow.logs import log

if TYPE_CHECKING:
    from json_workflow.monitor.live import Monitor
    from json_workflow.web.server import WebServer


def start_web(config: Config, monitor: Monitor | None, current: Callable[[], Config]) -> WebServer | None:
    """Serve the dashboard beside the files, when [http] enables it; None when it is off or cannot start.

    A dashboard that cannot start (its port taken, say) is logged and the files go on: they matter more.
    """
    if not config.http.enabled:
        return None
    try:
        return serve(config, monitor, current)
    except WorkflowError as e:
        log.error("%s; files are processed without it", e)
        return None


def serve(
    config: Config, monitor: Monitor | None, current: Callable[[], Config], listen_key: str = "http.listen"
) -> WebServer:
    """Serve the dashboard now; WorkflowError saying why it cannot (its port taken, its store unreachable).

    `listen_key` names where the address came from, in that error."""
    from json_workflow.store import open_store  # the web's own connection: a page never waits for a batch
    from json_workflow.web.server import WebServer, bind
    from json_workflow.web.view import View

    try:
        sock = bind(config.http)
    except OSError as e:
        listen = config.http.listen
        raise WorkflowError(f"cannot serve the dashboard on {listen} ({listen_key}): {e.strerror or e}") from None
    try:
        store = open_store(config, "web")
    except StoreError as e:
        sock.close()
        raise WorkflowError(f"cannot serve the dashboard: {e}") from None
    server = WebServer(View(current, store, monitor), config.http, sock).start()
    log.info("Dashboard, /metrics and health checks at %s", server.url, extra=logs.SUMMARY)
    return server
