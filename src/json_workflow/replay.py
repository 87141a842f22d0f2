"""Replay: what a change of rules would do, by routing the archived files by both rule sets.

Reading the archive is the only I/O here, and it only reads: parse and route, nothing written.
`difference` is the pure core: a file's added and removed folders, each with the rules behind it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from json_workflow.config import Config
from json_workflow.errors import Rejected
from json_workflow.intake.scan import is_job_name
from json_workflow.names import shown
from json_workflow.parse import Job, parse_job
from json_workflow.plural import count
from json_workflow.routing.route import Destination


@dataclass(frozen=True)
class Change:
    """One archived file whose destinations differ: folders added and removed, with the rules behind each."""

    path: str
    client: str
    added: tuple[Destination, ...]
    removed: tuple[Destination, ...]
    delivered: tuple[Destination, ...] = ()  # added by the new rules, and delivered there already
    digest: str = ""  # which version of the file was routed (see `digest`), when added copies were looked up
    job: Job | None = None  # its facts (JobDetails and document dropped), for the reception --apply records


# (path, client, digest, added) -> the folders among `added` that already had this version of the file.
Delivered = Callable[[str, str, str, Sequence[Destination]], set[str]]


def digest(data: bytes) -> str:
    """Which version of an archived file: the SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Totals:
    files: int = 0  # archived files read
    changed: int = 0
    delivered: int = 0  # added copies delivered already (by replay --apply, or the pipeline under the new rules)
    unreadable: list[str] = field(default_factory=list)  # not parsable or routable any more: "path: why", relative
    added: Counter[str] = field(default_factory=Counter)  # copies added, by rule
    removed: Counter[str] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)  # files changed, by client


def difference(old: Sequence[Destination], new: Sequence[Destination]) -> tuple[tuple[Destination, ...], ...]:
    """(added, removed): the routed folders only one plan has, each with the rules that send it there."""
    before = {d.path: d for d in old if not d.is_archive}  # a folder, or a URL
    after = {d.path: d for d in new if not d.is_archive}
    added = tuple(d for folder, d in after.items() if folder not in before)
    removed = tuple(d for folder, d in before.items() if folder not in after)
    return added, removed


def replay(
    files: Iterable[tuple[str, str]], old: Config, new: Config, totals: Totals, delivered: Delivered | None = None
) -> Iterator[Change]:
    """Route each (path, client folder) by both configurations; yield the files whose folders differ.

    An added folder that `delivered` says had this version of the file already is no change: it is delivered.
    """
    old_router, new_router = old.router(), new.router()
    for path, client in files:
        totals.files += 1
        try:
            with open(path, "rb") as f:
                data = f.read()
            job = parse_job(data, client)
            before, after = old_router.plan(job), new_router.plan(job)
        except (OSError, Rejected) as e:
            totals.unreadable.append(f"{shown(new.relative(path))}: {getattr(e, 'reason', None) or e}")
            continue
        added, removed = difference(before, after)
        done: tuple[Destination, ...] = ()
        version = ""
        if added and delivered is not None:
            version = digest(data)
            had = delivered(path, client, version, added)
            done, added = tuple(d for d in added if d.shown in had), tuple(d for d in added if d.shown not in had)
            totals.delivered += len(done)
        if added or removed:
            totals.changed += 1
            totals.clients[client] += 1
            totals.added.update(rule for d in added for rule in d.reasons)
            totals.removed.update(rule for d in removed for rule in d.reasons)
            facts = dataclasses.replace(job, details={}, document=None)  # a change list holds thousands
            yield Change(path, client, added, removed, done, version, facts)


def archived(
    config: Config, since: float | None, until: float | None, clients: Sequence[str] = ()
) -> Iterator[tuple[str, str]]:
    """(path, client folder) of the archived job files modified within [since, until), client by client."""
    wanted = {c.casefold() for c in clients}
    try:
        folders = sorted(os.scandir(config.archive), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for folder in folders:
        if not folder.is_dir(follow_symlinks=False) or (wanted and folder.name.casefold() not in wanted):
            continue
        with os.scandir(folder.path) as entries:
            names = sorted(e.name for e in entries if is_job_name(e.name) and e.is_file(follow_symlinks=False))
        for name in names:
            path = os.path.join(folder.path, name)
            if since is not None or until is not None:
                mtime = os.lstat(path).st_mtime
                if (since is not None and mtime < since) or (until is not None and mtime >= until):
                    continue
            yield path, folder.name


def day_start(day: datetime.date, config: Config) -> float:
    """The first second of `day` in `email.timezone`, as Unix time."""
    return datetime.datetime.combine(day, datetime.time(), config.email.zone).timestamp()


def rules_changed(old: Config, new: Config) -> str | None:
    """What a reload changes in the rules, in one line; None when the rules are the same."""
    before, after = {r.name: r for r in old.routes}, {r.name: r for r in new.routes}
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    changed = [n for n in after if n in before and after[n] != before[n]]
    if not (added or removed or changed):
        return None
    parts = [f"{what} {', '.join(repr(n) for n in names)}" for what, names in
             (("added", added), ("removed", removed), ("changed", changed)) if names]  # fmt: skip
    return "rules " + "; ".join(parts)


def recent_effect(old: Config, new: Config, now: float, days: int = 7) -> str:
    """The per-rule counts replay gives over the last `days` of the archive, in one line."""
    totals = Totals()
    for _ in replay(archived(new, now - days * 86400, None), old, new, totals):
        pass
    read = f"replay of the last {count(days, 'day')} ({count(totals.files, 'archived file')})"
    if not totals.changed:
        return f"{read}: no file would go elsewhere"
    counts = [f"+{n} {r!r}" for r, n in sorted(totals.added.items())]
    counts += [f"-{n} {r!r}" for r, n in sorted(totals.removed.items())]
    return f"{read}: {totals.changed} would go elsewhere; " + ", ".join(counts)
