"""The dashboard, /metrics and the health checks: served by the service, or alone by `json-workflow dashboard`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from json_workflow.config import Config
from json_workflow.errors import StoreError
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
    from json_workflow.store import open_store  # the web's own connection: a page never waits for a batch
    from json_workflow.web.server import WebServer, bind
    from json_workflow.web.view import View

    try:
        sock = bind(config.http)
    except OSError as e:
        log.error(
            "Cannot serve the dashboard on %s (http.listen): %s; files are processed without it",
            config.http.listen,
            e.strerror or e,
        )
        return None
    try:
        store = open_store(config, "web")
    except StoreError as e:
        sock.close()
        log.error("Cannot serve the dashboard: %s", e)
        return None
    server = WebServer(View(current, store, monitor), config.http, sock).start()
    log.info("Dashboard, /metrics and health checks at %s", server.url)
    return server
