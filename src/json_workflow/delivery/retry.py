"""Putting failed files back into the hot folder under their original names."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from json_workflow.config import UNKNOWN_CLIENT, Config
from json_workflow.delivery import durable
from json_workflow.delivery.failed import REASON_SUFFIX, fit_name, original_name
from json_workflow.intake.scan import is_job_name
from json_workflow.names import unshown

NAME_LINE = "name: "


@dataclass(frozen=True)
class Retried:
    source: Path
    target: Path | None  # None: skipped because a file of that name is already waiting


def retry(config: Config, clients: Sequence[str] = ()) -> Iterator[Retried]:
    """Move failed files of `clients` (all when empty) back to the hot folder and drop their reasons."""
    if not config.failed.is_dir():
        return
    wanted = {c.casefold() for c in clients}
    for folder in sorted(config.failed.iterdir()):
        if not folder.is_dir() or folder.is_symlink() or (wanted and folder.name.casefold() not in wanted):
            continue
        target_folder = config.hot if folder.name == UNKNOWN_CLIENT else config.hot / folder.name
        for failed in sorted(folder.iterdir()):
            if not is_job_name(failed.name) or original_name(failed.name) == failed.name:
                continue
            yield _move_back(failed, target_folder / hot_name(failed), config.permissions.dir_mode)


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


def _move_back(failed: Path, target: Path, dir_mode: int) -> Retried:
    target.parent.mkdir(mode=dir_mode, exist_ok=True)
    try:
        durable.move_new(str(failed), str(target))  # never replaces a newer file of that name in the hot folder
    except FileExistsError:
        return Retried(failed, None)
    reason = failed.with_name(failed.name + REASON_SUFFIX)
    reason.unlink(missing_ok=True)
    return Retried(failed, target)
