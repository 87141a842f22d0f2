"""A real SMTP server for the tests (aiosmtpd on loopback) that requires STARTTLS and AUTH, like a relay.

tests/data/smtp-test-cert.pem is a self-signed certificate for localhost/127.0.0.1 made only for
these tests (openssl req -x509 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

DATA = Path(__file__).parent / "data"
CERT, KEY = DATA / "smtp-test-cert.pem", DATA / "smtp-test-key.pem"
USER, PASSWORD = "postmaster", "s3cret-Pa55-never-logged"


@dataclass
class Inbox:
    """What the server received, and what it should answer to the next messages."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refuse: str | None = None  # e.g. "554 5.7.1 Message rejected for the test"
    hold_seconds: float = 0.0  # the first sender is kept this long at RCPT TO (its message not yet sent)
    held: threading.Event = field(default_factory=threading.Event)  # set when a sender is being kept

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.hold_seconds and not self.held.is_set():
            self.held.set()
            await asyncio.sleep(self.hold_seconds)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.refuse:
            return self.refuse
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    # aiosmtpd cannot listen on port 0 (aio-libs/aiosmtpd#388): ask the kernel for a free one first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_server(implicit_tls: bool = False) -> Iterator[tuple[int, Inbox]]:
    """(port, inbox) of a running server requiring TLS (STARTTLS, or from the first byte) then AUTH."""
    inbox = Inbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, KEY)
    options = {"authenticator": inbox.authenticate, "auth_require_tls": True}
    if implicit_tls:
        # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; here the whole connection is TLS.
        options.update(ssl_context=context, auth_require_tls=False)
    else:
        options.update(tls_context=context, require_starttls=True)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def email_settings(port: int, **more) -> dict:
    """An [email] table for the test server (the password comes from the environment)."""
    return {
        "enabled": True,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "starttls": True,
        "username": USER,
        "password_env": "JW_TEST_SMTP_PASSWORD",
        "ca_file": str(CERT),
        "sender": "twist@example.com",
        "recipients": ["ops@example.com", "lead@example.com"],
        **more,
    }
