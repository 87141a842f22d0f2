"""A small HTTP client for the dashboard tests: real requests on loopback, redirects not followed."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def request(url: str, method: str = "GET", form: dict | None = None, headers: dict | None = None) -> Reply:
    data = urllib.parse.urlencode(form, doseq=True).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=30) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode())


def csrf_of(page: str) -> str:
    """The CSRF token a page embeds in its forms."""
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def post(base: str, path: str, form: dict, headers: dict | None = None) -> Reply:
    """A POST as our own page sends it: its Origin, and the CSRF token unless the form has one."""
    origin = base.rstrip("/")
    return request(base.rstrip("/") + path, "POST", form, {"Origin": origin, **(headers or {})})
