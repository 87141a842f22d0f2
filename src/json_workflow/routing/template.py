"""Destinations with placeholders from the job's fields: "CLIENT-STORES/{ClientCode}/IN". Pure: no disk.

A placeholder names a field as a rule does (a JobDetails field in any case, or a dotted path). A
value becomes part of a folder name only when it is a safe single name: not empty, no slash, no
control or invisible character, not hidden, no "..". Otherwise the file fails with that reason,
before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from json_workflow.errors import Rejected
from json_workflow.parse import is_safe_folder_name
from json_workflow.routing.conditions import ABSENT, as_text, lookup, shown_value
from json_workflow.routing.remote import encoded

# The fields every job file may carry, as TWIST names them; a rule may also use any field its `when` names.
KNOWN = ("ClientCode", "JobCategory", "StudioCode", "Title", "JobNumber")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def placeholders(destination: str, when: Iterable[str]) -> list[str]:
    """The fields a destination names, checked; ValueError saying what is wrong."""
    names = _PLACEHOLDER.findall(destination)
    if "{" in _PLACEHOLDER.sub("", destination) or "}" in _PLACEHOLDER.sub("", destination):
        raise ValueError(f"{destination!r} has an unbalanced {{ or }}; a placeholder is written {{ClientCode}}")
    known = {name.casefold() for name in (*KNOWN, *when)}
    for name in names:
        if name.casefold() not in known:
            raise ValueError(
                f"unknown placeholder {{{name}}}: use {', '.join(KNOWN)}, or a field this rule's `when` names"
            )
    return names


def pattern(destination: str) -> re.Pattern[str]:
    """The folders a templated destination can become (each placeholder one folder name, or part of one)."""
    parts = _PLACEHOLDER.split(destination)  # literal, field, literal, field, ..., literal
    return re.compile("".join(re.escape(p) if i % 2 == 0 else "[^/]+" for i, p in enumerate(parts)))


@dataclass(frozen=True)
class Template:
    """A destination with placeholders, filled in per job."""

    rule: str
    text: str
    fields: tuple[str, ...]
    scheme: str = ""  # a URL's path (routing/remote.py): its values percent-encoded for http(s)

    def missing(self, details: Mapping[str, Any], document: Mapping[str, Any] | None) -> str | None:
        """The first field this destination names that the job lacks (absent or null); None when it has all."""
        for name in self.fields:
            value = lookup(details, document, name)
            if value is ABSENT or value is None:
                return name
        return None

    def render(self, details: Mapping[str, Any], document: Mapping[str, Any] | None) -> str:
        """The destination for this job; Rejected when a value is not a safe folder name."""
        values = {}
        for name in self.fields:
            value = lookup(details, document, name)
            text = None if isinstance(value, bool) else as_text(value)  # a flag is no folder name
            if text is None or not is_safe_folder_name(text):
                raise Rejected(
                    f'rule "{self.rule}": {{{name}}} is {shown_value(value)}, not a safe folder name for its '
                    f"destination {self.text!r}",
                    "route",
                )
            values[name] = encoded(text, self.scheme) if self.scheme else text
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)
