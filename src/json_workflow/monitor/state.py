"""The live state as it crosses threads and processes: a snapshot of a Monitor, saved as JSON for `status`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from json_workflow.store import Store


@dataclass
class Destination:
    """A configured destination folder and the rules (or archive, failed) that send files to it."""

    folder: str
    rules: list[str]
    state: str = "ok"  # or "trouble"
    error: str = ""
    since: float | None = None
    next_retry: float | None = None
    held: int = 0  # files waiting in the hot folder for it


@dataclass
class Event:
    seq: int
    at: float
    kind: str  # archived, failed, or info / warning for what is not a file
    text: str
    file: int | None = None  # the file's row in the history


@dataclass
class Live:
    """A snapshot of the live state, as saved for `status` and shown by the overview (JSON keys are an interface)."""

    instance: str
    pid: int
    started: float
    beat: float
    watch: str
    watcher_alive: bool
    hot_ok: bool
    waiting: int  # seen in the hot folder, not yet taken
    claimed: int
    pending: int  # back in the hot folder, waiting for a destination
    destinations: list[Destination]
    last_scan: dict[str, Any] | None
    scans: dict[str, int]
    report: dict[str, Any] | None
    activity: list[Event] = field(default_factory=list)

    def as_dict(self, activity: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not activity:
            del data["activity"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Live:
        """The state as saved; keys a newer version added are ignored (another instance may be newer)."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["destinations"] = [Destination(**_known(Destination, d)) for d in data.get("destinations", [])]
        data["activity"] = [Event(**_known(Event, e)) for e in data.get("activity", [])]
        return cls(**data)

    @property
    def in_trouble(self) -> list[Destination]:
        return [d for d in self.destinations if d.state != "ok"]


def last_scan_and_report(store: Store) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The last periodic scan and the last report sent, from the statistics, as the live state holds them."""
    scan, report = store.last_scan(), store.last_report()
    return None if scan is None else scan._asdict(), None if report is None else report._asdict()


def _known(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in data.items() if k in names}
