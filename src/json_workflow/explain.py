"""What would happen to a job file: its fields and every place it would go, and why. Pure: no disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from json_workflow.config import Config
from json_workflow.errors import Rejected
from json_workflow.parse import parse_job
from json_workflow.route import Destination, plan, why

# The fields `explain` shows, as TWIST names them.
SHOWN_FIELDS = ("ClientCode", "JobCategory", "StudioCode", "Title")


@dataclass(frozen=True)
class Explanation:
    """A job file's fields and destinations (the archive first), or why it would be set aside and where."""

    fields: tuple[tuple[str, str | None], ...] = ()
    destinations: tuple[Destination, ...] = ()
    rules: tuple[tuple[str, str | None], ...] = ()  # (rule, the condition that failed; None when it matched)
    rejection: Rejected | None = None
    failed_folder: Path | None = None


def client_folder(path: Path, hot: Path) -> str | None:
    """The client folder a file at `path` is in, when it is one folder down in the hot folder."""
    return path.parent.name if path.parent.parent == hot else None


def explain(data: bytes, folder: str | None, config: Config) -> Explanation:
    """What the service would do with a job file of these bytes found in client folder `folder`."""
    try:
        job = parse_job(data, folder)
    except Rejected as rejection:
        return Explanation(rejection=rejection, failed_folder=config.failed_folder(folder))
    values = (job.client, job.category, job.studio, job.title)
    rules = tuple((rule.name, why(rule, job.details, job.document)) for rule in config.routes)
    fields = tuple(zip(SHOWN_FIELDS, values, strict=True))
    try:
        destinations = tuple(plan(job, config))
    except Rejected as rejection:  # a templated destination its values cannot fill safely
        return Explanation(fields, (), rules, rejection, config.failed_folder(folder))
    return Explanation(fields, destinations, rules)
