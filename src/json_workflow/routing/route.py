"""Routing decisions: pure functions from a job and the rules to the folders it must reach."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from json_workflow import layout
from json_workflow.errors import Rejected
from json_workflow.parse import Job
from json_workflow.routing.conditions import ABSENT, lookup, shown_value
from json_workflow.routing.remote import Endpoint, shown_url
from json_workflow.routing.rules import Rule
from json_workflow.routing.template import Template

# Distinct (client, field values) plans a Router remembers; a run with more starts afresh.
REMEMBERED_PLANS = 4096


@dataclass(frozen=True, slots=True)
class Destination:
    """One folder a job is copied to, with the names of the rules (or "archive") that send it there; or a URL
    (`remote`: the rule, whose options say how to send it, and its endpoint), then `path` is the URL."""

    folder: Path
    reasons: tuple[str, ...]
    path: str = ""  # the folder as text, made once: every copy's names are built from it
    remote: tuple[Rule, Endpoint] | None = None

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", str(self.folder))

    @property
    def is_archive(self) -> bool:
        return self.reasons == ("archive",)

    @property
    def shown(self) -> str:
        """The folder, or the URL as logs show it (no query values)."""
        return self.path if self.remote is None else shown_url(self.path)


def matches(rule: Rule, details: Mapping[str, Any], document: Mapping[str, Any] | None = None) -> bool:
    """True when every condition of the rule's `when` holds for the job (field names in any case)."""
    return all(test.test(lookup(details, document, field)) for field, test in rule.when.items())


def why(rule: Rule, details: Mapping[str, Any], document: Mapping[str, Any] | None = None) -> str | None:
    """The first condition of the rule that fails, as `explain` says it; None when the rule matches."""
    for field, test in rule.when.items():
        value = lookup(details, document, field)
        if not test.test(value):
            return f"{field} {test} failed: it is {shown_value(value)}"
    return None


def route(details: Mapping[str, Any], rules: Iterable[Rule], document: Mapping[str, Any] | None = None) -> list[Rule]:
    """Every rule that matches the job's details, in configuration order."""
    return [rule for rule in rules if matches(rule, details, document)]


class Router:
    """The routing rules of one configuration with their folders resolved once (plan is per file).

    A plan depends only on the client and the values of the fields the rules look at, and a backlog
    holds few distinct ones: each is decided once and remembered.
    """

    def __init__(self, rules: Sequence[Rule], root: Path, archive: Path, own: Sequence[layout.Own] = ()):
        """`rules` in configuration order; their destinations are relative to `root`; `own`: never delivered into."""
        self.rules = tuple(rules)
        self.root = root
        self.archive = archive
        self.table: list[tuple[Rule, Path | Template | Endpoint]] = []
        fields: set[str] = set()
        for rule in self.rules:
            named, remote = rule.placeholders, rule.endpoint
            target: Path | Template | Endpoint = root / rule.destination
            if remote is not None:
                target = remote
            elif named:
                target = Template(rule.name, rule.destination, tuple(named))
            self.table.append((rule, target))
            fields.update(rule.when, named)
        self.fields = sorted(fields)
        self._plain = [f for f in self.fields if "." not in f]  # JobDetails fields: most are spelt as written
        self._dotted = [f for f in self.fields if "." in f]
        self.skips = any(rule.on_missing == "skip" for rule in self.rules)
        self._own = list(own)
        self._own_on_disk: list[layout.Own] | None = None
        self._plans: dict[tuple[Any, ...], tuple[Destination, ...]] = {}

    def plan(self, job: Job) -> tuple[Destination, ...]:
        """The archive folder first, then each routed folder once, naming every rule that chose it."""
        details, document = job.details, job.document
        key = [job.client]
        for field in self._plain:
            value = details.get(field, ABSENT)
            if value is ABSENT:  # spelt in another case, or absent
                value = lookup(details, document, field)
            key.append(value if type(value) is str else _key(value))
        for field in self._dotted:
            key.append(_key(lookup(details, document, field)))
        plan = self._plans.get(known := tuple(key))
        if plan is None:
            if len(self._plans) >= REMEMBERED_PLANS:
                self._plans.clear()
            plan = self._plans[known] = self._decide(job)
        return plan

    def _decide(self, job: Job) -> tuple[Destination, ...]:
        reasons: dict[Path, list[str]] = {self.archive / job.client: ["archive"]}
        remote: list[Destination] = []  # each rule its own: a copy's Idempotency-Key is per rule
        details, document = job.details, job.document
        for rule, target in self.table:  # only when a plan is new: the plans are remembered
            if not matches(rule, details, document):
                continue
            if isinstance(target, Endpoint):
                template = Template(rule.name, target.path, tuple(rule.placeholders), target.scheme)
                if rule.on_missing == "skip" and template.missing(details, document) is not None:
                    continue
                url = target.url(template.render(details, document))
                remote.append(Destination(Path(), (rule.name,), url, (rule, target)))
            elif isinstance(target, Path):
                reasons.setdefault(target, []).append(rule.name)
            elif rule.on_missing != "skip" or target.missing(details, document) is None:
                reasons.setdefault(self._filled(target, details, document), []).append(rule.name)
        return tuple(Destination(folder, tuple(names)) for folder, names in reasons.items()) + tuple(remote)

    def skipped(self, job: Job) -> tuple[str, ...]:
        """Why a matching rule with on_missing = "skip" sends this job no copy, for the log and `explain`."""
        if not self.skips:
            return ()
        details, document = job.details, job.document
        return tuple(
            f'rule "{rule.name}" skipped: {{{field}}} is missing (on_missing = "skip")'
            for rule, target in self.table
            if not isinstance(target, Path) and rule.on_missing == "skip" and matches(rule, details, document)
            if (field := _template(rule, target).missing(details, document)) is not None
        )

    def _filled(self, template: Template, details: Mapping[str, Any], document: Mapping[str, Any] | None) -> Path:
        """A templated destination for this job; Rejected when it would be in or over json-workflow's own folders."""
        folder = self.root / template.render(details, document)
        if self._own_on_disk is None:  # once per configuration: the folders as they are on disk
            self._own_on_disk = [o._replace(path=Path(os.path.realpath(o.path))) for o in self._own]
        own = layout.trespass(folder, self._own) or layout.trespass(Path(os.path.realpath(folder)), self._own_on_disk)
        if own is None and (met := layout.trespass_on_disk(folder, self._own)) is not None:
            own = met[0]  # the same folder by another name: a bind mount, another case on exFAT
        if own is not None:
            raise Rejected(
                f'rule "{template.rule}": its destination {folder} would be in or over the {own.name} '
                f"{own.path} ({own.key}); json-workflow never delivers into its own folders",
                "route",
            )
        return folder


def _template(rule: Rule, target: Template | Endpoint) -> Template:
    return Template(rule.name, target.path, tuple(rule.placeholders)) if isinstance(target, Endpoint) else target


def _key(value: Any) -> Any:
    """A field's value as a plan depends on it: as it is (a regex may tell case apart), or what kind it is."""
    if isinstance(value, dict | list):  # no condition looks inside: equal as far as any plan goes
        return ("object",) if isinstance(value, dict) else ("array",)
    return value if value is ABSENT or value is None or isinstance(value, str) else str(value)


def routed_names(destinations: Sequence[Destination]) -> list[str]:
    """The rule names of the non-archive destinations, for the log's "Routed to" lines."""
    return [" + ".join(d.reasons) for d in destinations if not d.is_archive]
