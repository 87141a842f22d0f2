"""What a rule's `when` can say of one field, and how a field is found in a job. Pure: no disk.

A value in `when` is a string or a list of strings (equal to one of them, ignoring case), or a table
of one operator: `{ glob = "..." }`, `{ regex = "..." }` (a full match, compiled at load),
`{ exists = true|false }`, or `{ not = ... }` (any of these, negated). A field is a JobDetails field
(its name in any case), or a dotted path from the top of the document
(`"JobSpecification.Delivery.Method"`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("glob", "regex", "exists", "not")


class _Absent:
    def __repr__(self) -> str:
        return "absent"


ABSENT: Any = _Absent()  # a field the job does not have


@dataclass(frozen=True, slots=True)
class Equals:
    values: tuple[str, ...]
    folded: frozenset[str]

    def test(self, value: Any) -> bool:
        text = as_text(value)
        return text is not None and text.casefold() in self.folded

    def __str__(self) -> str:
        return f"= {self.values[0]}" if len(self.values) == 1 else f"in {', '.join(self.values)}"


@dataclass(frozen=True, slots=True)
class Matches:
    """A glob (ignoring case, like equality) or a regex (as written), matching the whole value."""

    kind: str  # "glob" or "regex"
    pattern: str
    compiled: re.Pattern[str]

    def test(self, value: Any) -> bool:
        text = as_text(value)
        return text is not None and self.compiled.fullmatch(text) is not None

    def __str__(self) -> str:
        return f"matches {self.kind} {quoted(self.pattern)}"


@dataclass(frozen=True, slots=True)
class Exists:
    present: bool

    def test(self, value: Any) -> bool:
        return (value is not ABSENT and value is not None) == self.present

    def __str__(self) -> str:
        return "exists" if self.present else "is absent"


@dataclass(frozen=True, slots=True)
class Not:
    inner: Condition

    def test(self, value: Any) -> bool:
        return not self.inner.test(value)

    def __str__(self) -> str:
        inner = self.inner
        if isinstance(inner, Not):
            return str(inner.inner)
        if isinstance(inner, Exists):
            return str(Exists(not inner.present))
        if isinstance(inner, Equals):
            return f"!= {inner.values[0]}" if len(inner.values) == 1 else f"not in {', '.join(inner.values)}"
        return f"does not match {inner.kind} {quoted(inner.pattern)}"


Condition = Equals | Matches | Exists | Not


def condition(value: Any) -> Condition:
    """A `when` value as written in TOML, checked; ValueError saying what was expected."""
    if _scalar(value) or (isinstance(value, list) and value and all(_scalar(v) for v in value)):
        values = tuple(str(v) for v in (value if isinstance(value, list) else [value]))
        return Equals(values, frozenset(v.casefold() for v in values))
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(
            "expected a string, a list of strings, or a table of one operator: "
            '{ glob = "..." }, { regex = "..." }, { exists = true }, { not = ... }'
        )
    ((operator, operand),) = value.items()
    if operator == "not":
        return Not(condition(operand))
    if operator == "exists":
        if not isinstance(operand, bool):
            raise ValueError(f"exists takes true or false, got {operand!r}")
        return Exists(operand)
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}: expected one of {', '.join(OPERATORS)}")
    if not isinstance(operand, str) or not operand:
        raise ValueError(f"{operator} takes a non-empty string, got {operand!r}")
    if operator == "glob":
        return Matches("glob", operand, re.compile(fnmatch.translate(operand), re.IGNORECASE | re.DOTALL))
    try:
        return Matches("regex", operand, re.compile(operand))
    except re.error as e:
        raise ValueError(f"invalid regex {quoted(operand)}: {e}") from None


def check_field(name: str) -> str:
    """A field name or dotted path as a rule may name it; ValueError otherwise."""
    if not name or any(not part.strip() for part in name.split(".")):
        raise ValueError(f"{name!r} is not a field name or a dotted path such as JobSpecification.Delivery.Method")
    return name


def lookup(details: Mapping[str, Any], document: Mapping[str, Any] | None, name: str) -> Any:
    """The value of field `name`: a JobDetails field, or a dotted path from the document's top; ABSENT if none."""
    if "." not in name:
        return _get(details, name)
    value: Any = document if document is not None else {}
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return ABSENT
        value = _get(value, part)
        if value is ABSENT:
            return ABSENT
    return value


def _get(mapping: Mapping[str, Any], key: str) -> Any:
    """The key spelled so, else the first one equal to it ignoring case."""
    value = mapping.get(key, ABSENT)
    if value is not ABSENT:
        return value
    folded = key.casefold()  # only now: a search over every key costs a few microseconds
    for other, value in mapping.items():
        if other.casefold() == folded:
            return value
    return ABSENT


def as_text(value: Any) -> str | None:
    """A field's value as text for comparing; None when absent, null, or not a single value."""
    if value is ABSENT or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def shown_value(value: Any) -> str:
    """A field's value as `explain` reports it."""
    if value is ABSENT:
        return "absent"
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return "null" if value is None else quoted(str(as_text(value)))


def quoted(text: str) -> str:
    """Text in quotes as an operator writes it (`'Sale \\d{4}'`, not Python's doubled backslashes)."""
    if not text.isprintable():
        return repr(text)  # escapes what a terminal would hide or act on
    if "'" not in text:
        return f"'{text}'"  # TOML's literal string, the form a regex is best written in
    if '"' not in text:
        return f'"{text}"'
    if "'''" not in text and not text.endswith("'"):
        return f"'''{text}'''"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'  # TOML's basic string: how a pattern with every kind of quote is written
