"""What would happen to a job file: its fields and every place it would go, and why. Pure: no disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from json_workflow.errors import Rejected
from json_workflow.layout import UNKNOWN_CLIENT
from json_workflow.parse import parse_job
from json_workflow.routing.route import Destination, Router, why

# The fields `explain` shows, as TWIST names them.
SHOWN_FIELDS = ("ClientCode", "JobCategory", "StudioCode", "Title", "JobNumber")


@dataclass(frozen=True)
class Explanation:
    """A job file's fields and destinations (the archive first), or why it would be set aside and where."""

    fields: tuple[tuple[str, str | None], ...] = ()
    destinations: tuple[Destination, ...] = ()
    rules: tuple[tuple[str, str | None], ...] = ()  # (rule, the condition that failed; None when it matched)
    rejection: Rejected | None = None
    failed_folder: Path | None = None
    skipped: tuple[str, ...] = ()  # matching rules that leave out their copy (on_missing = "skip")


def client_folder(path: Path, hot: Path, failed: Path | None = None) -> str | None:
    """The client folder of a file one folder down in the hot folder, or in the failed folder (a retry's view).

    The failed folder's `_unknown` holds files from the top of the hot folder: they have none.
    """
    top, folder = path.parent.parent, path.parent.name
    if top == hot or (failed is not None and top == failed and folder != UNKNOWN_CLIENT):
        return folder
    return None


def explain(data: bytes, folder: str | None, router: Router, failed_folder: Path) -> Explanation:
    """What the service would do with a job file of these bytes found in client folder `folder`.

    `failed_folder` is where that client folder's rejected files go.
    """
    try:
        job = parse_job(data, folder)
    except Rejected as rejection:
        rules = _rules(router, *_readable(data))
        return Explanation(rules=rules, rejection=rejection, failed_folder=failed_folder)
    values = (job.client, job.category, job.studio, job.title, job.number)
    rules = _rules(router, job.details, job.document)
    fields = tuple(zip(SHOWN_FIELDS, values, strict=True))
    try:
        destinations = tuple(router.plan(job))
    except Rejected as rejection:  # a templated destination its values cannot fill safely
        return Explanation(fields, (), rules, rejection, failed_folder)
    return Explanation(fields, destinations, rules, skipped=router.skipped(job))


def _rules(router: Router, details: Any, document: Any) -> tuple[tuple[str, str | None], ...]:
    if not isinstance(details, dict):
        return ()
    return tuple((rule.name, why(rule, details, document)) for rule in router.rules)


def _readable(data: bytes) -> tuple[Any, Any]:
    """A rejected file's JobDetails and document as far as they can be read, for its rules table."""
    try:
        document = json.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError):
        return None, None
    spec = document.get("JobSpecification") if isinstance(document, dict) else None
    return (spec.get("JobDetails") if isinstance(spec, dict) else None), document
