"""Claiming a job file: an atomic rename into the hidden claim area before anything else touches it.

Once claimed, no scan, watcher, worker or second instance can take the file again. A claimed name
keeps the client folder and the original name, behind a sequence number that orders arrivals.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from json_workflow.intake import Candidate

AREA = ".processing"
TOP = ".top"  # files claimed from the top of the hot folder; a client folder is never hidden
LONG = ".long"  # suffix of a claim's own folder, for names too long to take a number in front


class Sequence:
    """Strictly increasing claim numbers that sort in arrival order, even across restarts."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return f"{self._last:020d}"


class Claims:
    """The claim area of one hot folder."""

    def __init__(self, hot: Path, dir_mode: int):
        self.area = hot / AREA
        self.dir_mode = dir_mode
        self.sequence = Sequence()
        self._made: dict[str | None, str] = {}  # client -> its claim folder, made

    def prepare(self, client: str | None) -> None:
        """Make a client's claim folder ahead of time.

        watchdog holds a rename's "moved from" half for 0.5 s, and every event behind it, unless the
        "moved to" half arrives: the claim folder must already be watched when the first file is claimed.
        """
        self._folder(client)

    def _folder(self, client: str | None) -> str:
        folder = self._made.get(client)
        if folder is None:
            folder = os.path.join(self.area, client or TOP)
            os.makedirs(folder, mode=self.dir_mode, exist_ok=True)
            self._made[client] = folder
        return folder

    def claim(self, candidate: Candidate) -> Candidate | None:
        """Move the candidate into the claim area; None when it is gone (someone else took it)."""
        folder, number = self._folder(candidate.folder), self.sequence.next()
        if len(candidate.name.encode()) + len(number) < 255:
            target = os.path.join(folder, f"{number}_{candidate.name}")
        else:  # no room for the number in front: a folder of its own keeps the name whole
            os.mkdir(os.path.join(folder, number + LONG))
            target = os.path.join(folder, number + LONG, candidate.name)
        try:
            os.rename(candidate.path, target)
        except FileNotFoundError:
            return None
        return Candidate(target, candidate.folder, candidate.symlink, candidate.name, candidate.origin)

    def release(self, claimed: Candidate, moved: bool = False) -> None:
        """Remove a finished claim; one `moved` into the archive is gone already (its folder may remain)."""
        if not moved:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claimed.path)
        folder = os.path.dirname(claimed.path)
        if folder.endswith(LONG):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(folder)

    def hand_back(self, claimed: Candidate) -> bool:
        """Return a claimed file to the hot folder; False when a newer file of that name is already there."""
        try:
            os.link(claimed.path, claimed.origin, follow_symlinks=False)
        except FileExistsError:
            return False
        self.release(claimed)
        return True

    def tidy(self) -> None:
        """Remove the claim area's empty folders (at the end of a run; a service keeps them)."""
        self._made.clear()
        with contextlib.suppress(OSError), os.scandir(self.area) as folders:
            for folder in folders:
                with contextlib.suppress(OSError):
                    os.rmdir(folder.path)  # only succeeds when empty
        with contextlib.suppress(OSError):
            os.rmdir(self.area)

    def leftovers(self) -> Iterator[Candidate]:
        """Every file still in the claim area (a crash left it), oldest claim first."""
        if not self.area.is_dir():
            return
        found = []
        for folder in os.scandir(self.area):
            if not folder.is_dir(follow_symlinks=False):
                continue
            client = None if folder.name == TOP else folder.name
            origin_folder = self.area.parent / client if client else self.area.parent
            for entry in os.scandir(folder.path):
                number, _, name = entry.name.partition("_")
                path = entry.path
                if entry.name.endswith(LONG) and entry.is_dir(follow_symlinks=False):
                    number, inside = entry.name.removesuffix(LONG), os.listdir(entry.path)
                    if not inside:
                        os.rmdir(entry.path)  # made just before a crash, nothing moved in
                        continue
                    name, path = inside[0], os.path.join(entry.path, inside[0])
                if number.isdigit() and name:
                    found.append((number, Candidate(path, client, os.path.islink(path), name=name,
                                                    origin=str(origin_folder / name))))
        found.sort(key=lambda item: item[0])
        yield from (candidate for _, candidate in found)
