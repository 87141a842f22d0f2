"""A fleet's instances as status, the dashboard and /metrics show them: alive, stopped, taken over."""

from __future__ import annotations

from dataclasses import dataclass

from json_workflow.config import Config
from json_workflow.store import Store


@dataclass
class Instance:
    """One instance of the fleet now."""

    name: str
    host: str
    pid: int
    alive: bool  # its lease renewed within store.lease_seconds
    beat_age: float  # seconds since it renewed its lease, by the store's clock
    taken_by: str | None  # the instance that took over its claim area after it stopped, if one did
    processed_today: int
    failed_today: int

    @property
    def waiting_for_takeover(self) -> bool:
        """Stopped without a takeover yet (files it claimed wait for one)."""
        return not self.alive and self.taken_by is None

    def line(self) -> str:
        if self.alive:
            state = f"running on {self.host} (pid {self.pid}), lease renewed {self.beat_age:.0f}s ago"
        elif self.taken_by == self.name:
            state = f"stopped {self.beat_age:.0f}s ago, nothing left claimed"
        elif self.taken_by is not None:
            state = f"stopped {self.beat_age:.0f}s ago; its claims were finished by {self.taken_by}"
        else:
            state = f"not renewing its lease for {self.beat_age:.0f}s; its claims wait for a takeover"
        return f"{self.name}: {state}; today {self.processed_today} processed, {self.failed_today} failed"


def instances(store: Store, config: Config, today: list[tuple[str, int, int]]) -> list[Instance]:
    """The fleet's instances (none alone), with `today`'s (instance, processed, failed) counts."""
    if not config.fleet:
        return []
    now, counts = store.now(), {name: (processed, failed) for name, processed, failed in today}
    out = []
    for m in store.members():
        alive = now - m.beat < config.store.lease_seconds
        # A takeover (or a clean stop with nothing claimed, by itself) is marked at or after the last beat.
        taken_by = m.taken_by if m.taken is not None and m.taken >= m.beat else None
        processed, failed = counts.get(m.name, (0, 0))
        out.append(Instance(m.name, m.host, m.pid, alive, now - m.beat, taken_by, processed, failed))
    return out
