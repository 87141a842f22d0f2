"""Routing decisions: pure functions from a job and the rules to the folders it must reach."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from json_workflow.config import Config
from json_workflow.parse import Job
from json_workflow.rules import Rule

# Distinct (client, field values) plans a Router remembers; a run with more starts afresh.
REMEMBERED_PLANS = 4096


@dataclass(frozen=True, slots=True)
class Destination:
    """One folder a job is copied to, with the names of the rules (or "archive") that send it there."""

    folder: Path
    reasons: tuple[str, ...]
    path: str = ""  # the folder as text, made once: every copy's names are built from it

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", str(self.folder))

    @property
    def is_archive(self) -> bool:
        return self.reasons == ("archive",)


def _accepted(rule: Rule) -> dict[str, frozenset[str]]:
    return {field: frozenset(a.casefold() for a in values) for field, values in rule.when.items()}


def _matches(when: dict[str, frozenset[str]], details: Mapping[str, Any]) -> bool:
    return all(_value(_field(details, field)) in accepted for field, accepted in when.items())


_ABSENT = object()


def _field(details: Mapping[str, Any], name: str) -> Any:
    """The JobDetails field `name`: the key spelled so, else the first one equal to it ignoring case."""
    value = details.get(name, _ABSENT)
    if value is not _ABSENT:
        return value
    folded = name.casefold()  # only now: a search over every key costs a few microseconds
    for key, value in details.items():
        if key.casefold() == folded:
            return value
    return None


def _value(value: Any) -> str | None:
    """A field's value as rules compare it (ignoring case); None when absent or not a single value."""
    return None if value is None or isinstance(value, dict | list) else str(value).casefold()


def matches(rule: Rule, details: Mapping[str, Any]) -> bool:
    """True when every field named in the rule's `when` equals one of its values, names and values in any case."""
    return _matches(_accepted(rule), details)


def route(details: Mapping[str, Any], rules: Iterable[Rule]) -> list[Rule]:
    """Every rule that matches the job's details, in configuration order."""
    return [rule for rule in rules if matches(rule, details)]


class Router:
    """The routing rules of one configuration with their folders resolved once (plan is per file).

    A plan depends only on the client and the values of the fields the rules look at, and a backlog
    holds few distinct ones: each is decided once and remembered.
    """

    def __init__(self, config: Config):
        self.archive = config.archive
        self.table = [(rule.name, _accepted(rule), config.folder(rule.destination)) for rule in config.routes]
        self.fields = sorted({field for _, when, _ in self.table for field in when})
        self._plans: dict[tuple[str | None, ...], tuple[Destination, ...]] = {}

    def plan(self, job: Job) -> tuple[Destination, ...]:
        """The archive folder first, then each routed folder once, naming every rule that chose it."""
        details = job.details  # a field spelled as the rule spells it is found without a call
        key = (job.client, *(_value(details[f] if f in details else _field(details, f)) for f in self.fields))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= REMEMBERED_PLANS:
                self._plans.clear()
            plan = self._plans[key] = self._decide(job)
        return plan

    def _decide(self, job: Job) -> tuple[Destination, ...]:
        reasons: dict[Path, list[str]] = {self.archive / job.client: ["archive"]}
        for name, when, folder in self.table:
            if _matches(when, job.details):
                reasons.setdefault(folder, []).append(name)
        return tuple(Destination(folder, tuple(names)) for folder, names in reasons.items())


def plan(job: Job, config: Config) -> tuple[Destination, ...]:
    """The archive folder first, then each routed folder once, naming every rule that chose it."""
    return Router(config).plan(job)


def routed_names(destinations: Sequence[Destination]) -> list[str]:
    """The rule names of the non-archive destinations, for the log's "Routed to" lines."""
    return [" + ".join(d.reasons) for d in destinations if not d.is_archive]
