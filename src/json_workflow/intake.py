"""Finding job files in the hot folder: a streamed scan that never follows a symlink."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Editors and transfer tools write these beside the real file; they are never ours to touch.
_TEMP_PREFIXES = (".", "~")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A job file found in the hot folder; `folder` is its client folder, or None at the top level."""

    path: str
    folder: str | None
    symlink: bool = False

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def display(self) -> str:
        """The path as the log shows it: CLIENT/name.json."""
        return f"{self.folder}/{self.name}" if self.folder else self.name


def is_job_name(name: str) -> bool:
    """True for `*.json` (any case) that is not hidden or an editor/transfer temporary."""
    return name[-5:].lower() == ".json" and not name.startswith(_TEMP_PREFIXES)


def scan(hot: Path) -> Iterator[Candidate]:
    """Yield every job file in `hot` and its client folders, streaming (never the whole listing)."""
    with os.scandir(hot) as top:
        for entry in top:
            if entry.name.startswith(_TEMP_PREFIXES):
                continue
            if entry.is_symlink():
                # A link in the hot folder, to a folder or a file, is set aside and never followed.
                if is_job_name(entry.name) or entry.is_dir():
                    yield Candidate(entry.path, None, symlink=True)
            elif entry.is_dir(follow_symlinks=False):
                yield from _scan_client(entry)
            elif is_job_name(entry.name):
                yield Candidate(entry.path, None)


def _scan_client(folder: os.DirEntry) -> Iterator[Candidate]:
    try:
        entries = os.scandir(folder.path)
    except FileNotFoundError:  # removed while we looked
        return
    with entries:
        for entry in entries:
            # A sub-folder named like a job is not a job; sub-folders are never entered.
            if is_job_name(entry.name) and not entry.is_dir(follow_symlinks=False):
                yield Candidate(entry.path, folder.name, symlink=entry.is_symlink())
