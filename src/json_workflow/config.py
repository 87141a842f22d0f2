"""The configuration: one typed object, loaded from TOML once and validated before anything is touched."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from json_workflow import layout
from json_workflow.errors import ConfigError
from json_workflow.rules import SEED_ROUTES, Folder, Rule

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

CONFIG_ENV = "JSON_WORKFLOW_CONFIG"
ROOT_ENV = "JSON_WORKFLOW_ROOT"
# The failed folder of files from the top of the hot folder, whose client is not known.
UNKNOWN_CLIENT = "_unknown"


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Strict):
    hot: Folder = "JSON"
    archive: Folder = "JSON_STORE"
    failed: Folder = "JSON_FAILED"
    logs: Folder = "JSON_PARSER_LOGS"
    state: Folder = "JSON_PARSER_STATE"


class Permissions(_Strict):
    file_mode: Annotated[int, BeforeValidator(_mode(0o777))] = 0o664
    # setgid is allowed on folders: it keeps a shared group on everything created below them.
    dir_mode: Annotated[int, BeforeValidator(_mode(0o2777))] = 0o775


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


class Email(_Strict):
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


class Report(_Strict):
    title: str = Field(default="JSON Workflow Daily Report", min_length=1)
    # The client breakdown counts files sent by rules whose name contains this ("" for no column).
    highlight: str = "Celtra"


class Config(_Strict):
    """Everything json-workflow reads from its configuration file, with the seed's values as defaults."""

    root: Path = Path("/data/PRODUCTION")
    paths: Paths = Paths()
    permissions: Permissions = Permissions()
    max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    workers: int = Field(default=10, ge=1, le=256)
    flush: Literal["filesystem", "file"] = "filesystem"
    # Service mode (json-workflow run)
    watch: Literal["inotify", "polling"] = "inotify"
    stable_seconds: float = Field(default=2.0, ge=0, le=3600)
    scan_interval: float = Field(default=60.0, gt=0)
    scan_timeout: float = Field(default=120.0, gt=0)
    slow_scan_seconds: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=10, ge=1, le=10_000)
    batch_seconds: float = Field(default=30.0, gt=0)
    shutdown_timeout: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    # Statistics, the daily report and alerts
    retention_days: int = Field(default=90, ge=1)
    report: Report = Report()
    email: Email = Email()
    routes: tuple[Rule, ...] = tuple(Rule(**r) for r in SEED_ROUTES)

    @field_validator("routes")
    @classmethod
    def _unique_names(cls, routes: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen = set()
        for rule in routes:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; names must be unique")
            seen.add(rule.name)
        return routes

    def folder(self, path: str) -> Path:
        """Resolve a configured folder: relative paths are under root."""
        return self.root / path

    def failed_folder(self, client_folder: str | None) -> Path:
        """Where a rejected file of this client folder is set aside (`_unknown` for the top of the hot folder)."""
        return self.failed / (client_folder or UNKNOWN_CLIENT)

    @property
    def hot(self) -> Path:
        return self.folder(self.paths.hot)

    @property
    def archive(self) -> Path:
        return self.folder(self.paths.archive)

    @property
    def failed(self) -> Path:
        return self.folder(self.paths.failed)

    @property
    def logs(self) -> Path:
        return self.folder(self.paths.logs)

    @property
    def state(self) -> Path:
        return self.folder(self.paths.state)


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _describe(error: ErrorDetails) -> str:
    # Pydantic adds a "[function-after]" step to loc for validators; it means nothing to an operator.
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = _MESSAGES.get(error["type"]) or error["msg"].removeprefix("Value error, ")
    if error["type"] not in _MESSAGES and "input" in error and not isinstance(error["input"], dict | list):
        message += f" (got {error['input']!r})"
    return f"{_key_path(loc)}: {message}"


def build(data: dict[str, Any], source: str, root: str | Path | None = None) -> Config:
    """Validate a configuration mapping; `root` (from --root) overrides the file's root. Touches no disk."""
    if root is not None:
        data = {**data, "root": str(root)}
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_describe(err) for err in e.errors()]) from None
    config = config.model_copy(update={"root": Path(os.path.abspath(config.root))})
    check_folders(config, source, on_disk=False)
    return config


def check_folders(config: Config, source: str, on_disk: bool = True) -> None:
    """Refuse folders that would feed the hot folder, as written and (`on_disk`) through symlinks too."""
    delivered = [
        ("paths.archive", config.archive),
        ("paths.failed", config.failed),
        *((f"routes[{i}].destination", config.folder(rule.destination)) for i, rule in enumerate(config.routes)),
    ]
    # The archive and failed folder get a folder per client, named after the files: one could be the hot folder.
    per_client = [("paths.archive", "archive", config.archive), ("paths.failed", "failed", config.failed)]
    if problems := layout.feeding_hot(config.hot, delivered, per_client, on_disk):
        raise ConfigError(source, problems)


def load(path: str | Path | None = None, root: str | Path | None = None) -> Config:
    """Load the configuration file (or the built-in one when `path` is None) and check its folders on disk."""
    source = "built-in configuration" if path is None else str(path)
    config = build({} if path is None else _read(path), source, root)
    check_folders(config, source)
    return config


def _read(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read: {e.strerror}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), [f"not valid TOML: {e}"]) from None
