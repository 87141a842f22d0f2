"""A real HTTP endpoint for the tests, on loopback, with TLS from a CA the tests make (trustme): it records
every request and answers with faults on demand (a status with Retry-After, a slow answer, a reset mid-body).

Like a receiver that honours Idempotency-Key, it tells a repeated key from a new one (`keys`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]  # the client's address: one per connection
    at: float = 0.0  # when it came (time.time())


@dataclass
class Fault:
    """How to answer one request: a status (and its headers, body), after `delay` seconds; or a reset."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    reset: bool = False  # read half the body, then close the connection with a TCP reset


@dataclass
class Endpoint:
    url: str
    ca_file: Path
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)  # taken one per request, first first; then `usual`
    usual: Fault = field(default_factory=Fault)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self) -> Counter[str]:
        """How many requests carried each Idempotency-Key."""
        with self.lock:
            return Counter(r.headers.get("Idempotency-Key", "") for r in self.requests)

    def accepted(self) -> list[Request]:
        """The requests answered 2xx (the first with each key, as a deduplicating receiver keeps them)."""
        with self.lock:
            return list(self._accepted)

    _accepted: list[Request] = field(default_factory=list)


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002
            pass

        def _answer(self) -> None:
            with endpoint.lock:
                fault = endpoint.faults.pop(0) if endpoint.faults else endpoint.usual
            length = int(self.headers.get("Content-Length", 0))
            if fault.reset:
                self.rfile.read(length // 2)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            body = self.rfile.read(length)
            if len(body) < length:  # the client went away mid-body: no request, as any server sees it
                self.close_connection = True
                return
            request = Request(
                self.command, self.path, dict(self.headers.items()), body, self.client_address, time.time()
            )
            with endpoint.lock:
                endpoint.requests.append(request)
            time.sleep(fault.delay)
            if 200 <= fault.status < 300:
                with endpoint.lock:
                    key = request.headers.get("Idempotency-Key")
                    if key is None or all(r.headers.get("Idempotency-Key") != key for r in endpoint._accepted):
                        endpoint._accepted.append(request)
            with contextlib.suppress(OSError):  # the client gave up waiting
                self.send_response(fault.status)
                for name, value in fault.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(fault.body)))
                self.end_headers()
                self.wfile.write(fault.body)

        do_POST = do_PUT = do_PATCH = _answer  # noqa: N815

    return Handler


@contextlib.contextmanager
def http_endpoint(folder: Path, tls: bool = True) -> Iterator[Endpoint]:
    """An endpoint on 127.0.0.1 (https with a certificate for 127.0.0.1 and localhost, signed by the CA
    written to folder/ca.pem), until the block ends."""
    ca = trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    endpoint = Endpoint("", ca_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
    server.daemon_threads = True
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    endpoint.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
