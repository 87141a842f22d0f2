"""The configuration: one typed object, loaded from TOML once and validated before anything is touched."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from json_workflow import layout
from json_workflow.errors import ConfigError
from json_workflow.routing.route import Router
from json_workflow.routing.rules import SEED_ROUTES, Rule
from json_workflow.settings import (
    Email,
    Http,
    Paths,
    Permissions,
    Report,
    StoreSettings,
    Strict,
    default_instance,
    instance_name,
    processes_setting,
)

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

CONFIG_ENV = "JSON_WORKFLOW_CONFIG"
ROOT_ENV = "JSON_WORKFLOW_ROOT"
# The hidden folder of the hot folder where files are claimed (by a rename) before anything reads them.
CLAIM_AREA = ".processing"
# Processes "auto" starts at most: past that the journal's one writer at a time is what the files wait for.
MAX_AUTO_PROCESSES = 8
FLEET_BATCH_SIZE = 100  # batch_size's default with a PostgreSQL store


class Config(Strict):
    """Everything json-workflow reads from its configuration file, with the seed's values as defaults."""

    root: Path = Path("/data/PRODUCTION")
    # This process's name in a fleet (its claim area, its lines in stats, the report and metrics).
    instance: Annotated[str, BeforeValidator(instance_name)] = Field(default_factory=default_instance)
    paths: Paths = Paths()
    permissions: Permissions = Permissions()
    max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    workers: int = Field(default=10, ge=1, le=256)
    processes: Annotated[int | Literal["auto"], PlainValidator(processes_setting)] = "auto"
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
    http: Http = Http()
    store: StoreSettings = StoreSettings()
    routes: tuple[Rule, ...] = tuple(Rule(**r) for r in SEED_ROUTES)

    @model_validator(mode="before")
    @classmethod
    def _fleet_batches(cls, data: Any) -> Any:
        # A fleet's commits are round trips to its database: under load it takes bigger batches (a lone
        # file still goes alone, at once). Measured in docs/performance.md.
        store = data.get("store") if isinstance(data, dict) else None
        if isinstance(store, dict) and store.get("url") and "batch_size" not in data:
            return {**data, "batch_size": FLEET_BATCH_SIZE}
        return data

    @field_validator("routes")
    @classmethod
    def _unique_names(cls, routes: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen = set()
        for rule in routes:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}; names must be unique")
            seen.add(rule.name)
        return routes

    @property
    def dotted_fields(self) -> bool:
        """True when a rule looks past JobDetails (a dotted path in `when` or in a destination)."""
        return any("." in field for rule in self.routes for field in (*rule.when, *rule.placeholders))

    def folder(self, path: str) -> Path:
        """Resolve a configured folder: relative paths are under root."""
        return self.root / path

    def relative(self, folder: str | Path) -> str:
        """A folder as the configuration names it: relative to root when below it, else whole (a URL as it is)."""
        if "://" in str(folder):
            return str(folder)
        path = Path(folder)
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def failed_folder(self, client_folder: str | None) -> Path:
        """Where a rejected file of this client folder is set aside (`_unknown` for the top of the hot folder)."""
        return self.failed / (client_folder or layout.UNKNOWN_CLIENT)

    @property
    def report_settings(self) -> dict[str, Any]:
        """What shapes the daily report this instance would send (a fleet's instances compare theirs)."""
        email = self.email
        return {
            "mails": email.enabled and not email.secret_problems(),
            "recipients": list(email.recipients) if email.enabled else [],
            "report_time": email.report_time,
            "timezone": email.timezone,
            "title": self.report.title,
            "highlight": self.report.highlight,
        }

    @property
    def own_folders(self) -> list[layout.Own]:
        """The folders json-workflow keeps for itself: no destination may be in or over one."""
        return layout.own_folders(self.hot, self.archive, self.failed, self.logs, self.state)

    @property
    def highlight(self) -> str:
        """report.highlight, when a rule's name contains it (the store's test); else "": no column of zeros."""
        wanted = self.report.highlight.strip()
        return wanted if wanted and any(wanted.lower() in r.name.lower() for r in self.routes) else ""

    def router(self) -> Router:
        """The routing rules with their folders resolved, as every file is routed."""
        return Router(self.routes, self.root, self.archive, self.own_folders)

    def fixed_part(self, rule: Rule) -> Path:
        """A rule's destination, or for a templated one the folder its placeholders are filled in below."""
        parts = Path(rule.destination).parts
        fixed = next((i for i, part in enumerate(parts) if "{" in part), len(parts))
        return self.root.joinpath(*parts[:fixed])

    @property
    def fleet(self) -> bool:
        """True when the store is PostgreSQL, shared by any number of instances on this data root."""
        return bool(self.store.url)

    @property
    def process_count(self) -> int:
        """Processes to share a large backlog: `processes`, or for "auto" the cores this process may use (at most 8)."""
        if self.processes != "auto":
            return self.processes
        return min(MAX_AUTO_PROCESSES, len(os.sched_getaffinity(0)))

    @property
    def claim_area(self) -> Path:
        """Where this instance claims files: its own folder in a fleet, the hot folder's .processing alone."""
        area = self.hot / CLAIM_AREA
        return area / self.instance if self.fleet else area

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
    def log_folder(self) -> Path:
        """Where this process's json_workflow.log is: a folder per instance in a fleet (one file, one writer)."""
        return self.logs / self.instance if self.fleet else self.logs

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
    echoed = loc != ("store", "url") and loc[-1:] != ("destination",)  # a URL may hold a password: never repeated
    if echoed and error["type"] not in _MESSAGES and "input" in error and not isinstance(error["input"], dict | list):
        message += f" (got {error['input']!r})"
    return f"{_key_path(loc)}: {message}"


def build(data: dict[str, Any], source: str, root: str | Path | None = None, base: Path | None = None) -> Config:
    """Validate a configuration mapping; `root` (from --root) overrides the file's root; the files a rule names
    are relative to `base` (the configuration file's folder; the working folder). Touches no disk."""
    if root is not None:
        data = {**data, "root": str(root)}
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_describe(err) for err in e.errors()]) from None
    base = Path(os.path.abspath(base or "."))
    routes = tuple(_files_under(rule, base) for rule in config.routes)
    config = config.model_copy(update={"root": Path(os.path.abspath(config.root)), "routes": routes})
    check_folders(config, source, on_disk=False)
    return config


def _files_under(rule: Rule, base: Path) -> Rule:
    """A URL rule with its key_file, known_hosts and ca_file absolute: `~` expanded, a relative one under
    `base` (the configuration file's folder)."""
    if rule.endpoint is None:
        return rule
    files = {option: getattr(rule, option) for option in ("key_file", "known_hosts", "ca_file")}
    return rule.model_copy(update={o: str(base / os.path.expanduser(v)) for o, v in files.items() if v is not None})


def check_folders(config: Config, source: str, on_disk: bool = True) -> None:
    """Refuse folders that would feed the hot folder or json-workflow's own folders, as written and (`on_disk`)
    through symlinks too."""
    destinations = [
        (f"routes[{i}].destination", config.folder(rule.destination), config.fixed_part(rule))
        for i, rule in enumerate(config.routes)
        if rule.endpoint is None
    ]
    if problems := layout.problems(config.own_folders, destinations, on_disk):
        raise ConfigError(source, problems)


def load(path: str | Path | None = None, root: str | Path | None = None) -> Config:
    """Load the configuration file (or the built-in one when `path` is None) and check its folders on disk."""
    source = "built-in configuration" if path is None else str(path)
    config = build({} if path is None else _read(path), source, root, None if path is None else Path(path).parent)
    check_folders(config, source)
    return config


# Settings that shape the process itself; a reload reports them and keeps the running values.
RESTART_KEYS = ("root", "paths", "workers", "processes", "watch", "http", "instance", "store")


def reload(running: Config, path: str | Path | None, root: str | Path | None) -> tuple[Config, list[str]]:
    """The configuration file again, as a running service applies it: the keys that shape the process keep
    their running values (returned by name); ConfigError, naming what is wrong, when it is invalid."""
    new = load(path, root)
    if problems := new.email.secret_problems() + new.http.secret_problems():
        raise ConfigError(str(path or "built-in configuration"), problems)
    kept = [key for key in RESTART_KEYS if getattr(new, key) != getattr(running, key)]
    new = new.model_copy(update={key: getattr(running, key) for key in kept})
    # The file was checked against its own folders; the new rules must suit the running ones too.
    check_folders(new, str(path or "built-in configuration"))
    return new, kept


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
