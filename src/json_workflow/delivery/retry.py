"""Putting failed files back into the hot folder under their original names."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from json_workflow import durable
from json_workflow.config import Config
from json_workflow.delivery.failed import REASON_SUFFIX, fit_name, original_name
from json_workflow.intake.scan import is_job_name
from json_workflow.layout import UNKNOWN_CLIENT
from json_workflow.names import unshown

NAME_LINE = "name: "


WAITING = "a file of that name is already waiting in the hot folder"


@dataclass(frozen=True)
class Retried:
    source: Path
    target: Path | None  # None: skipped, for `skipped`
    skipped: str = ""


def failed_clients(config: Config) -> list[str]:
    """The client folders of the failed folder that hold failed files, sorted."""
    try:
        folders = sorted(p for p in config.failed.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:  # no failed folder: nothing ever failed here
        return []
    return [folder.name for folder in folders if any(is_failed_file(f) for f in folder.iterdir())]


def retry(config: Config, clients: Sequence[str] = ()) -> Iterator[Retried]:
    """Move failed files of `clients` (all when empty) back to the hot folder and drop their reasons."""
    if not config.failed.is_dir():
        return
    wanted = {c.casefold() for c in clients}
    for folder in sorted(config.failed.iterdir()):
        if not folder.is_dir() or folder.is_symlink() or (wanted and folder.name.casefold() not in wanted):
            continue
        for failed in sorted(folder.iterdir()):
            if is_failed_file(failed):
                yield _move_back(config, failed)


def retry_known(config: Config, paths: Iterable[str]) -> Iterator[Retried]:
    """Move back the failed files the store recorded at `paths`: only those still where a failed file belongs."""
    for path in paths:
        failed = Path(path)
        folder = failed.parent
        if folder.parent != config.failed or not is_failed_file(failed):
            yield Retried(failed, None, "it is not in the configured failed folder")
        elif folder.is_symlink() or failed.is_symlink() or not failed.is_file():
            yield Retried(failed, None, "it is no longer in the failed folder")
        else:
            yield _move_back(config, failed)


def is_failed_file(failed: Path) -> bool:
    """True for a name the failed folder gives a job file (not its reason file, nor anything else)."""
    return is_job_name(failed.name) and original_name(failed.name) != failed.name


def hot_name(failed: Path) -> str:
    """The name a failed file had in the hot folder: whole in its reason file, maybe shortened in its own.

    The reason file's name is taken only when it is a plain job file name that shortens to the failed
    file's own (not one from another file, nor a path out of the hot folder); older reason files have none.
    """
    own = original_name(failed.name)
    try:
        text = failed.with_name(failed.name + REASON_SUFFIX).read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return own
    line = next((line for line in text.splitlines() if line.startswith(NAME_LINE)), None)
    if line is None:
        return own
    name = unshown(line.removeprefix(NAME_LINE))
    return name if _plain_job_name(name) and fit_name(name) == own else own


def _plain_job_name(name: str) -> bool:
    """True for one path component that is a job file name (not hidden) and fits in a folder entry."""
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError:  # a surrogate that no file name's bytes make
        return False
    return is_job_name(name) and "/" not in name and "\0" not in name and size <= 255


def _move_back(config: Config, failed: Path) -> Retried:
    client = failed.parent.name
    target = (config.hot if client == UNKNOWN_CLIENT else config.hot / client) / hot_name(failed)
    target.parent.mkdir(mode=config.permissions.dir_mode, exist_ok=True)
    try:
        durable.move_new(str(failed), str(target))  # never replaces a newer file of that name in the hot folder
    except FileExistsError:
        return Retried(failed, None, WAITING)
    except FileNotFoundError:  # taken back meanwhile, by another retry
        return Retried(failed, None, "it is no longer in the failed folder")
    reason = failed.with_name(failed.name + REASON_SUFFIX)
    reason.unlink(missing_ok=True)
    return Retried(failed, target)
