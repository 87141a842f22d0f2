"""The configuration's sections: paths, permissions, email, report, http (config.Config holds one of each)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from json_workflow.routing.rules import Folder


def _mode(allowed: int) -> Callable[[Any], Any]:
    """A permission mode within `allowed` bits, from TOML octal (0o664) or a string ("0664")."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and re.fullmatch(r"(0o|0)?[0-7]{3,4}", value):
            value = int(value.removeprefix("0o"), 8)
        # A forgotten 0o (file_mode = 664) reads as decimal 664 = 0o1230; the stray high bits give it away.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value and not value & ~allowed:
            return value
        raise ValueError(f'expected a permission mode within 0o{allowed:o}, written 0o664 (TOML octal) or "0664"')

    return check


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Strict):
    hot: Folder = "JSON"
    archive: Folder = "JSON_STORE"
    failed: Folder = "JSON_FAILED"
    logs: Folder = "JSON_PARSER_LOGS"
    state: Folder = "JSON_PARSER_STATE"


class Permissions(Strict):
    file_mode: Annotated[int, BeforeValidator(_mode(0o777))] = 0o664
    # setgid is allowed on folders: it keeps a shared group on everything created below them.
    dir_mode: Annotated[int, BeforeValidator(_mode(0o2777))] = 0o775


_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def default_instance() -> str:
    """This host's name, made a safe folder name (it names the instance's claim area)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).lstrip("._-")[:63]
    return name or "localhost"


def instance_name(value: Any) -> Any:
    if isinstance(value, str) and _INSTANCE.fullmatch(value):
        return value
    raise ValueError(
        "expected a name of 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit "
        "(it names the instance's claim area, JSON/.processing/NAME)"
    )


def processes_setting(value: Any) -> Any:
    if value == "auto" or (type(value) is int and 1 <= value <= 64):
        return value
    raise ValueError('expected "auto" (one process per core, at most 8) or a number of processes from 1 to 64')


def store_url(value: Any) -> Any:
    """A store URL as written: "" or postgresql://user@host:port/database, never with a password."""
    if value == "":
        return value
    if not isinstance(value, str):
        raise ValueError('expected "" (SQLite in paths.state) or "postgresql://user@host:port/database"')
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ValueError('expected "postgresql://user@host:port/database" (or "" for SQLite in paths.state)')
    if parts.password is not None:
        raise ValueError(
            "the URL holds a password: remove it and set the environment variable named by store.password_env"
        )
    return value


class StoreSettings(Strict):
    """Where the journal and statistics live: SQLite in paths.state (one host), or PostgreSQL (a fleet)."""

    url: Annotated[str, BeforeValidator(store_url)] = ""
    password_env: str = "JSON_WORKFLOW_DB_PASSWORD"
    # A fleet's instance that renews nothing for this long is taken over (renewals every sixth of it).
    lease_seconds: float = Field(default=30.0, ge=2, le=300)
    # How long a command (run --once, status, ...) tries to reach the store before it gives up; the service waits.
    connect_timeout: float = Field(default=30.0, ge=1, le=3600)

    def password(self) -> str | None:
        return os.environ.get(self.password_env) or None

    def shown(self) -> str:
        """The URL as logs may show it (it never holds a password)."""
        return self.url or "SQLite"


def _clock_time(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        return value
    raise ValueError('expected a time of day as "HH:MM" (24-hour)')


def _zone(value: Any) -> Any:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError('expected an IANA time zone name such as "Europe/London" or "UTC"') from None
    return value


class Email(Strict):
    """The daily report and failure alerts by SMTP; the password comes from the environment only."""

    enabled: bool = False
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str = ""
    password_env: str = "JSON_WORKFLOW_SMTP_PASSWORD"
    ca_file: str = ""  # a CA bundle for a relay with a private certificate; default: the system's
    timeout_seconds: float = Field(default=30.0, gt=0)
    sender: str = ""
    recipients: tuple[str, ...] = ()
    subject_prefix: str = ""
    report_time: Annotated[str, BeforeValidator(_clock_time)] = "00:00"
    timezone: Annotated[str, BeforeValidator(_zone)] = "UTC"
    alerts: bool = True
    alert_interval_minutes: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> Email:
        if self.ssl and self.starttls:
            raise ValueError("ssl (port 465) and starttls (port 587) exclude each other: set starttls = false")
        if self.enabled:
            missing = [key for key in ("smtp_host", "sender", "recipients") if not getattr(self, key)]
            if missing:
                raise ValueError(f"email is enabled but {', '.join(missing)} not set")
        return self

    def secret_problems(self) -> list[str]:
        """What is wrong with the password's environment variable, checked where mail is sent."""
        if self.enabled and self.username and not os.environ.get(self.password_env):
            return [
                f"email.password_env: the environment variable {self.password_env} is not set or empty "
                "(it holds the SMTP password for email.username; set it in the service's environment)"
            ]
        return []

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.username else None


class Report(Strict):
    title: str = Field(default="JSON Workflow Daily Report", min_length=1)
    # The client breakdown counts files sent by rules whose name contains this ("" for no column).
    highlight: str = "Celtra"


def checked_listen(value: Any) -> Any:
    """A listen address as given; ValueError saying what is expected."""
    if isinstance(value, str) and (address := split_listen(value)) is not None and 0 <= address[1] <= 65535:
        return value
    raise ValueError('expected "host:port", such as "127.0.0.1:8787", "[::1]:8787" or "0.0.0.0:8787"')


def split_listen(listen: str) -> tuple[str, int] | None:
    """("host", port) of a listen address; None when it is not one."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or any(c in host for c in "/ []"):
        return None
    return host, int(port)


class Http(Strict):
    """The dashboard, /metrics and the health checks, served by the service (and `json-workflow dashboard`)."""

    enabled: bool = True
    listen: Annotated[str, BeforeValidator(checked_listen)] = "127.0.0.1:8787"
    token_env: str = "JSON_WORKFLOW_HTTP_TOKEN"
    # Host names clients may use besides loopback, this host's names and the address listened on.
    allowed_hosts: tuple[str, ...] = ()

    @property
    def address(self) -> tuple[str, int]:
        address = split_listen(self.listen)
        assert address is not None  # validated
        return address

    @property
    def loopback(self) -> bool:
        host = self.address[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def token(self) -> str | None:
        """The token from the environment; blank counts as unset (no client could send it)."""
        return os.environ.get(self.token_env, "").strip() or None

    def secret_problems(self, key: str = "http.listen") -> list[str]:
        """What is wrong with the token's environment variable, checked where the server starts.

        `key`: where the listen address came from (`--listen` of `json-workflow dashboard`)."""
        if self.enabled and not self.loopback and not self.token():
            where = "the service's environment" if key == "http.listen" else "the environment"
            return [
                f"{key}: {self.listen} is not a loopback address, so every request must carry a token: set "
                f"the environment variable {self.token_env} (http.token_env) in {where}, or "
                'listen on "127.0.0.1:8787"'
            ]
        return []
