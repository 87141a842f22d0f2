"""Turning a job file's bytes into a Job, or a Rejected with a reason an operator can act on."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from json_workflow.errors import Rejected
from json_workflow.names import shown

_BOM = b"\xef\xbb\xbf"
# A client code becomes a folder name: one plain path component, nothing hidden, no control characters.
_SAFE_FOLDER = re.compile(r"[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]{0,99}")


@dataclass(frozen=True, slots=True)
class Job:
    """The parsed facts of one job file; `details` is its JobDetails object, for routing rules."""

    client: str
    category: str
    studio: str | None
    title: str | None
    details: Mapping[str, Any]
    number: str | None = None  # JobDetails.JobNumber, for the file history; never required
    document: Mapping[str, Any] | None = None  # the whole file, for rules on a dotted path


def is_safe_folder_name(name: str) -> bool:
    """True when `name` can be used as exactly one folder below a configured folder.

    Printable rules out what no one sees or no file system takes: control and format characters
    (zero-width, bidi), lone surrogates, separators other than the space.
    """
    return bool(_SAFE_FOLDER.fullmatch(name)) and name.strip() == name and name.isprintable()


def _not_json(constant: str) -> Any:
    raise Rejected(f"invalid JSON: {constant} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_not_json)  # made once: json.loads with an option makes one per call


def parse_job(raw: bytes, folder: str | None, keep_document: bool = True) -> Job:
    """Parse and validate a job file found in client folder `folder` (None at the hot folder's top).

    `keep_document`: the Job holds the whole document, for rules on a dotted path; without them it
    holds JobDetails only (a batch of whole documents kept alive makes every garbage collection longer).
    """
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    if keep_document:  # rules read any field: every integer exact, as only the standard library reads them
        document = _exactly(raw)
    else:
        try:  # orjson first: a third of the standard library's cost, and most files are well formed
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = _exactly(raw)  # the standard library's verdict, and its words for what is wrong
        else:
            if _has_float(document):  # orjson reads an integer past 64 bits as a float: read it exactly
                document = _exactly(raw)
    return job_from_document(document, folder, keep_document)


def _exactly(raw: bytes) -> Any:
    """`raw` decoded by the standard library: every integer exact; Rejected with where it is not JSON."""
    if not raw.strip():
        raise Rejected("empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(f"not UTF-8: invalid byte 0x{raw[e.start]:02x} at offset {e.start}") from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise Rejected(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:  # a number over Python's limit of digits
        raise Rejected(f"invalid JSON: {e}") from None
    except RecursionError:
        raise Rejected("invalid JSON: nesting too deep to parse") from None


def _has_float(document: Any) -> bool:
    """True when JobDetails holds a float: the only values the history and rules without dotted paths read."""
    spec = document.get("JobSpecification") if type(document) is dict else None
    details = spec.get("JobDetails") if type(spec) is dict else None
    return type(details) is dict and float in set(map(type, details.values()))


def job_from_document(document: Any, folder: str | None, keep_document: bool = True) -> Job:
    """Validate the structure of a decoded job file."""
    if not isinstance(document, dict):
        raise Rejected(f"top level is a JSON {_kind(document)}, expected an object", "validate")
    spec = document.get("JobSpecification")
    details = spec.get("JobDetails") if isinstance(spec, dict) else None
    if not isinstance(details, dict):
        raise Rejected("no JobSpecification.JobDetails object", "validate")
    client = _required(details, "ClientCode")
    category = _required(details, "JobCategory")
    if not is_safe_folder_name(client):
        raise Rejected(f"ClientCode {client!r} is not a safe folder name", "validate")
    if folder is not None and client.casefold() != folder.casefold():
        raise Rejected(f"ClientCode {client!r} does not match its client folder '{shown(folder)}'", "validate")
    return Job(
        client=folder or client,
        category=category,
        studio=_optional(details, "StudioCode"),
        title=_optional(details, "Title"),
        details=details,
        number=_job_number(details.get("JobNumber")),
        document=document if keep_document else None,
    )


def _required(details: dict[str, Any], key: str) -> str:
    value = details.get(key)
    if key not in details:
        raise Rejected(f"JobDetails.{key} is missing", "validate")
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"JobDetails.{key} must be a non-empty string, got a JSON {_kind(value)}", "validate")
    return value if value.isascii() else _text(value, key)


def _optional(details: dict[str, Any], key: str) -> str | None:
    value = details.get(key)
    if value is None:
        return None
    value = str(value)
    return value if value.isascii() else _text(value, key)


def _job_number(value: Any) -> str | None:
    """A job number as the history searches it: a string or integer that is valid text, else none."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if text and text.isprintable() and len(text) <= 100 else None


def _text(value: str, key: str) -> str:
    """`value`, unless it holds a lone surrogate ("\\ud800"): no file name, log or database takes that."""
    try:
        value.encode()
    except UnicodeEncodeError as e:
        raise Rejected(
            f"JobDetails.{key} is not valid Unicode text (a lone surrogate at position {e.start})", "validate"
        ) from None
    return value


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "empty string" if not value.strip() else "string"
    return {dict: "object", list: "array", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")
