"""The HTTP server: uvicorn on a socket bound here, in a thread of its own beside the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

import uvicorn

from json_workflow.settings import Http
from json_workflow.web.app import make_app
from json_workflow.web.security import Guard
from json_workflow.web.view import View

STOP_SECONDS = 5.0


def bind(http: Http) -> socket.socket:
    """The listening socket (OSError when the address is taken or not ours); bound before anything starts."""
    host, port = http.address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False)


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server ticking once a second, not ten times: its tick was most of an idle service's CPU."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # every tick is a second: the Date header stays exact
            await asyncio.sleep(1.0)
            should_exit = await self.on_tick(counter)


class WebServer:
    """Serves `view` on `sock` until stopped; the web never holds up a file (its own thread and store)."""

    def __init__(self, view: View, http: Http, sock: socket.socket):
        self.view, self.sock = view, sock
        self.url = url(sock)
        config = uvicorn.Config(
            make_app(view, Guard(http)),
            log_config=None,  # our logging, not uvicorn's: its errors reach our log
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self.server = _Server(config)
        self.thread = threading.Thread(target=self._serve, name="web", daemon=True)

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_SECONDS)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.view.store.close()
