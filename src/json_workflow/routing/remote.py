"""Destinations past the folder: an HTTP(S) endpoint or an SFTP server, written as a rule's `destination` URL.

Pure: parsing and showing URLs, no network. A URL carries no secret (tokens and passwords come from the
environment, named by the rule's `token_env` and `password_env`), and placeholders fill only its path.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

HTTP_SCHEMES = ("http", "https")
SCHEMES = (*HTTP_SCHEMES, "sftp")
SFTP_PORT = 22
# Headers json-workflow sets itself on every request; a rule's `headers` may not replace them.
OWN_HEADERS = ("authorization", "content-type", "content-length", "host", "idempotency-key")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")  # a name or IPv4 address; an IPv6 one (urlsplit drops [])


def is_url(destination: str) -> bool:
    """True when a destination is written as a URL (scheme://...) rather than a folder."""
    return _SCHEME.match(destination) is not None


@dataclass(frozen=True)
class Endpoint:
    """A destination URL taken apart; `path` may hold placeholders ({ClientCode})."""

    scheme: str
    host: str
    port: int | None
    user: str
    path: str
    query: str

    @property
    def is_http(self) -> bool:
        return self.scheme in HTTP_SCHEMES

    def url(self, path: str | None = None) -> str:
        """The URL, with `path` (a rendered one) instead of the configured path."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{self.user}@{host}" if self.user else host
        if self.port is not None:
            where += f":{self.port}"
        return f"{self.scheme}://{where}{self.path if path is None else path}" + (
            f"?{self.query}" if self.query else ""
        )

    def shown(self, path: str | None = None) -> str:
        """The URL as logs, `explain` and `check-config` show it: a query's values (a signature, a key) left out."""
        return shown_url(self.url(path))


def shown_url(url: str) -> str:
    """A URL without its query's values, which may be secret (a signature, a key): `?sig=...&v=...`."""
    base, question, query = url.partition("?")
    if not question:
        return url
    names = [name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)]
    return base + "?" + "&".join(f"{name}=..." for name in names)


def endpoint(text: str) -> Endpoint:
    """A destination URL checked; ValueError saying what is wrong and what is expected."""
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(f"expected a folder, or a URL starting https://, http:// or sftp://, not {scheme}://")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a valid URL: {e}") from None
    if parts.password is not None:
        where = "token_env" if scheme in HTTP_SCHEMES else "password_env"
        raise ValueError(f"a password in the URL would be a secret in the configuration file: name an environment "
                         f"variable holding it in the rule's {where} instead")  # fmt: skip
    if not parts.hostname or "{" in parts.netloc:
        raise ValueError("expected a host name after :// (placeholders only in the path)")
    if not _HOST.fullmatch(parts.hostname):
        raise ValueError(f"{parts.hostname!r} is not a host name or an IP address")
    if parts.fragment or text.endswith("#"):
        raise ValueError("expected no #fragment: it is never sent")
    if "{" in parts.query:
        raise ValueError("expected placeholders only in the path, not in the ?query")
    if ".." in parts.path.split("/"):
        raise ValueError('expected no ".." in the path')
    if scheme == "sftp":
        if not parts.username:
            raise ValueError("expected the user to log in as: sftp://USER@HOST[:PORT]/PATH")
        if parts.query:
            raise ValueError("expected no ?query in an sftp:// URL")
        if not parts.path.startswith("/") or parts.path == "/":
            raise ValueError("expected the folder to upload into after the host: sftp://USER@HOST[:PORT]/PATH")
    elif parts.username is not None:
        raise ValueError("expected no user in an http(s) URL: the rule's token_env names its bearer token")
    return Endpoint(scheme, parts.hostname, port, parts.username or "", parts.path or "/", parts.query)


def encoded(value: str, scheme: str) -> str:
    """A placeholder's value as it goes into a URL's path (percent-encoded); an SFTP path takes it as it is."""
    return urllib.parse.quote(value, safe="") if scheme in HTTP_SCHEMES else value


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """A rule's extra headers: valid names, printable values, none that json-workflow sets itself."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.casefold() in OWN_HEADERS:
            also = " (the bearer token comes from token_env)" if name.casefold() == "authorization" else ""
            raise ValueError(f"{name} is set by json-workflow on every request{also}")
        if not value.isprintable():
            raise ValueError(f"the value of {name} has control or line-breaking characters")
    return headers
