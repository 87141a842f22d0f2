"""Routing decisions: pure functions from a job and the rules to the folders it must reach."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from json_workflow.config import Config, Rule
from json_workflow.parse import Job


@dataclass(frozen=True, slots=True)
class Destination:
    """One folder a job is copied to, with the names of the rules (or "archive") that send it there."""

    folder: Path
    reasons: tuple[str, ...]

    @property
    def is_archive(self) -> bool:
        return self.reasons == ("archive",)


def _accepted(rule: Rule) -> dict[str, frozenset[str]]:
    return {field: frozenset(a.casefold() for a in values) for field, values in rule.when.items()}


def _matches(when: dict[str, frozenset[str]], details: Mapping[str, Any]) -> bool:
    for field, accepted in when.items():
        value = details.get(field)
        if value is None or isinstance(value, dict | list) or str(value).casefold() not in accepted:
            return False
    return True


def matches(rule: Rule, details: Mapping[str, Any]) -> bool:
    """True when every field named in the rule's `when` equals one of its values, ignoring case."""
    return _matches(_accepted(rule), details)


def route(details: Mapping[str, Any], rules: Iterable[Rule]) -> list[Rule]:
    """Every rule that matches the job's details, in configuration order."""
    return [rule for rule in rules if matches(rule, details)]


class Router:
    """The routing rules of one configuration with their folders resolved once (plan is per file)."""

    def __init__(self, config: Config):
        self.archive = config.archive
        self.table = [(rule.name, _accepted(rule), config.folder(rule.destination)) for rule in config.routes]

    def plan(self, job: Job) -> list[Destination]:
        """The archive folder first, then each routed folder once, naming every rule that chose it."""
        reasons: dict[Path, list[str]] = {_client_folder(self.archive, job.client): ["archive"]}
        for name, when, folder in self.table:
            if _matches(when, job.details):
                reasons.setdefault(folder, []).append(name)
        return [Destination(folder, tuple(names)) for folder, names in reasons.items()]


@functools.lru_cache(maxsize=4096)
def _client_folder(archive: Path, client: str) -> Path:
    # One Path per client, not per file: building and hashing a new Path was 9 % of the Python time.
    return archive / client


def plan(job: Job, config: Config) -> list[Destination]:
    """The archive folder first, then each routed folder once, naming every rule that chose it."""
    return Router(config).plan(job)


def routed_names(destinations: Sequence[Destination]) -> list[str]:
    """The rule names of the non-archive destinations, for the log's "Routed to" lines."""
    return [" + ".join(d.reasons) for d in destinations if not d.is_archive]
