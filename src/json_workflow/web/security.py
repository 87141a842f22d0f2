"""Who may talk to the dashboard: the Host header, the token, and the Origin and CSRF token of every POST.

- Host: a browser page on another site that rebinds its DNS name to 127.0.0.1 reaches a loopback
  server with its own name in Host; only this host's names and addresses are answered.
- Token: with `http.token_env` set, every request carries it (`Authorization: Bearer`), or the
  cookie the login form sets (an HMAC of the token, never the token itself).
- POST: its Origin (or, without one, its Referer) is this server's own, and its form or
  `X-CSRF-Token` header holds the CSRF token the pages embed. GET never changes anything.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from json_workflow.settings import Http

SESSION_COOKIE = "json_workflow_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
# Reached without a token: the login form itself (its POST still needs the Origin and the CSRF token).
OPEN_PATHS = ("/login", "/static/")


class Guard:
    """The checks of one server: its allowed hosts, its token, its CSRF token."""

    def __init__(self, http: Http, secret: bytes | None = None):
        secret = secret or secrets.token_bytes(32)
        self.token = http.token()
        self.csrf = hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()
        self.session = hmac.new(self.token.encode(), b"session", hashlib.sha256).hexdigest() if self.token else None
        self.hosts = allowed_hosts(http.address[0], http.allowed_hosts)

    # --- each request -------------------------------------------------------------------------------
    def refusal(self, request: Request) -> Response | None:
        """Why the request is refused, as the response to give; None to let it through."""
        host = _hostname(request.headers.get("host", ""))
        server = request.scope.get("server")
        if host not in self.hosts and not (server and host == _normal(server[0])):
            return PlainTextResponse("Invalid Host header", status_code=400)
        path = request.url.path
        if self.token and not self.signed_in(request) and not path.startswith(OPEN_PATHS):
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                return RedirectResponse("/login?next=" + _safe_next(path), status_code=303)
            return PlainTextResponse(
                "A token is needed: Authorization: Bearer <token>, or sign in at /login",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method not in ("GET", "HEAD", "OPTIONS") and not self.same_origin(request):
            return PlainTextResponse("Cross-origin request refused (Origin or Referer)", status_code=403)
        return None

    def signed_in(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return self.session is not None and hmac.compare_digest(cookie.encode(), self.session.encode())

    def same_origin(self, request: Request) -> bool:
        """The POST came from one of our pages: its Origin (or Referer) is this very server."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("host", "")

    async def form(self, request: Request) -> FormData:
        """The POST's form, once its CSRF token is checked (403 otherwise)."""
        form = await request.form()
        given = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
        if not hmac.compare_digest(given.encode(), self.csrf.encode()):
            raise HTTPException(403, "Missing or wrong CSRF token: reload the page and try again")
        return form

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())


class GuardMiddleware:
    """Applies the Guard to every HTTP request before any route sees it."""

    def __init__(self, app: ASGIApp, guard: Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.guard.refusal(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def allowed_hosts(listen_host: str, extra: Iterable[str]) -> set[str]:
    """Loopback names and addresses, this host's names, the address listened on, and the configured ones."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    if listen_host not in ("0.0.0.0", "::"):
        names.add(listen_host)
    return {_normal(n) for n in (*names, *extra) if n}


def _hostname(host: str) -> str:
    """The host part of a Host header ("[::1]:8787" -> "::1"), lower case."""
    if host.startswith("["):
        return _normal(host[1 : host.find("]")] if "]" in host else host)
    return _normal(host.rpartition(":")[0] if host.count(":") == 1 else host)


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


def _safe_next(path: str) -> str:
    """A path of ours to go back to after signing in (never another site's address)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"
