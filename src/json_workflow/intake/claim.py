"""Claiming a job file: an atomic rename into the hidden claim area before anything else touches it.

Once claimed, no scan, watcher, worker or second instance can take the file again. A claimed name
keeps the client folder and the original name, behind a sequence number that orders arrivals.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from json_workflow import durable
from json_workflow.errors import WorkflowError
from json_workflow.intake.scan import Candidate
from json_workflow.logs import log

TOP = ".top"  # files claimed from the top of the hot folder; a client folder is never hidden
LONG = ".long"  # suffix of a claim's own folder, for names too long to take a number in front
WORKER_AREA = ".process-"  # a worker process's own claim area inside its instance's (delivery.processes)


def worker_area(area: Path, number: int) -> Path:
    """The claim area of worker process `number` (2 and up) inside the instance's `area`."""
    return area / f"{WORKER_AREA}{number}"


def worker_areas(area: Path) -> list[Path]:
    """The worker processes' claim areas in `area` (those of a run that stopped, or running), in order.

    WorkflowError for one that is a symlink or a file: a worker would claim nothing into it, ever.
    """
    try:
        with os.scandir(area) as entries:
            found = [e for e in entries if e.name.startswith(WORKER_AREA)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in found:
        if not entry.is_dir(follow_symlinks=False):
            raise not_a_folder(entry.path)
    return sorted(Path(e.path) for e in found)


def not_a_folder(path: str) -> WorkflowError:
    return WorkflowError(
        f"the claim area {path} is a symlink or not a folder; json-workflow never "
        "follows a link out of the hot folder: remove it (it is made again as a folder)"
    )


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
    """A claim area of one hot folder (config.claim_area: in a fleet, each instance has its own)."""

    def __init__(self, hot: Path, area: Path, dir_mode: int):
        self.hot, self.area = hot, area
        # The folders to make, outermost first: .processing (and the instance's in a fleet).
        self.levels = [str(hot / level) for level in reversed(area.relative_to(hot).parents[:-1])] + [str(area)]
        self.dir_mode = dir_mode
        self.sequence = Sequence()
        self._made: dict[str | None, str] = {}  # client -> its claim folder, made
        self.holding: set[str] = set()  # the claims now in the area, for the live counts (set.add is atomic)

    def _folder(self, client: str | None) -> str:
        folder = self._made.get(client)
        if folder is None:
            folder = os.path.join(self.area, client or TOP)
            for level in self.levels:
                self._make(level)
            self._make(folder)
            self._made[client] = folder
        return folder

    def _make(self, folder: str) -> None:
        """Make `folder` unless it is there; a symlink there is refused, never followed out of the hot folder."""
        try:
            os.mkdir(folder, self.dir_mode)
        except FileExistsError:
            pass
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            raise not_a_folder(folder)

    def forget_folders(self) -> None:
        """Make the claim folders again before the next claim (the hot folder was remounted, say)."""
        self._made.clear()

    def claim(self, candidate: Candidate) -> Candidate | None:
        """Move the candidate into the claim area; None when it is gone (someone else took it)."""
        try:
            return self._claim(candidate)
        except FileNotFoundError:
            if not os.path.lexists(candidate.path):
                return None
        log.warning("The claim area %s was removed; making it again", self.area)
        self.forget_folders()
        return self._claim(candidate)

    def _claim(self, candidate: Candidate) -> Candidate | None:
        folder, number = self._folder(candidate.folder), self.sequence.next()
        name = candidate.name  # a character is at most 4 bytes: only a long name needs encoding to tell
        if len(name) * 4 + len(number) < 255 or len(os.fsencode(name)) + len(number) < 255:
            target = f"{folder}/{number}_{name}"
        else:  # no room for the number in front: a folder of its own keeps the name whole
            os.mkdir(os.path.join(folder, number + LONG))
            target = os.path.join(folder, number + LONG, candidate.name)
        try:
            os.rename(candidate.path, target)
        except FileNotFoundError:
            # NFSv3 answers a retransmitted rename whose first reply was lost with ENOENT, though it was
            # made: the file is ours when it is where the rename put it.
            if not os.path.lexists(target) or os.path.lexists(candidate.path):
                raise
        self.holding.add(target)
        return Candidate(target, candidate.folder, candidate.symlink, candidate.name, candidate.origin)

    def adopt(self, claimed: Candidate) -> Candidate | None:
        """Move a claim of another (dead) instance's area into this one; None when another took it first."""
        try:
            return self._claim(claimed)
        except FileNotFoundError:
            if os.path.lexists(claimed.path):
                raise
            return None

    def release(self, claimed: Candidate, moved: bool = False) -> None:
        """Remove a finished claim; one `moved` into the archive is gone already (its folder may remain)."""
        self.holding.discard(claimed.path)
        if not moved:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claimed.path)
        folder = durable.parent(claimed.path)
        if folder.endswith(LONG):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(folder)

    def hand_back(self, claimed: Candidate) -> bool:
        """Return a claimed file to the hot folder; False when a newer file of that name is already there."""
        try:
            durable.move_new(claimed.path, claimed.origin)
        except FileExistsError:
            return False
        self.release(claimed, moved=True)
        return True

    def tidy(self) -> None:
        """Remove the claim area's empty folders (at the end of a run; a service keeps them)."""
        self._made.clear()
        with contextlib.suppress(OSError), os.scandir(self.area) as folders:
            for folder in folders:
                with contextlib.suppress(OSError):
                    os.rmdir(folder.path)  # only succeeds when empty
        for level in reversed(self.levels):
            with contextlib.suppress(OSError):
                os.rmdir(level)  # only when empty: the fleet's other instances keep theirs

    def leftovers(self) -> Iterator[Candidate]:
        """Every file still in the claim area (a crash left it), oldest claim first."""
        if not os.path.lexists(self.area):
            return
        self._make(str(self.area))  # refuses a symlink before anything is listed through it
        found = []
        for folder in os.scandir(self.area):
            if folder.name.startswith(WORKER_AREA):  # a worker process's area: recovered on its own
                continue
            if folder.is_symlink():
                self._make(folder.path)  # refused: it would lead a claim out of the hot folder
            if not folder.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(folder.path):
                path = entry.path
                if entry.name.endswith(LONG) and entry.is_dir(follow_symlinks=False):
                    inside = os.listdir(entry.path)
                    if not inside:
                        os.rmdir(entry.path)  # made just before a crash, nothing moved in
                        continue
                    path = os.path.join(entry.path, inside[0])
                if (candidate := self.candidate(path)) is not None:
                    found.append((os.path.relpath(path, folder.path), candidate))
        found.sort(key=lambda item: item[0])  # by claim number: arrival order
        self.holding.update(candidate.path for _, candidate in found)
        yield from (candidate for _, candidate in found)

    def candidate(self, claim: str) -> Candidate | None:
        """What a claim in this area stands for: its client folder and name in the hot folder; None if not a claim.

        AREA/CLIENT/NUMBER_name, or AREA/CLIENT/NUMBER.long/name for a name too long for a number in front.
        """
        folder, name = os.path.split(claim)
        number = os.path.basename(folder).removesuffix(LONG)
        if number != os.path.basename(folder):  # a long name's own folder
            folder = os.path.dirname(folder)
        else:
            number, _, name = name.partition("_")
        inside = os.path.dirname(folder)
        if inside != str(self.area) and not (  # or a worker process's area in it (recovery finishes those too)
            os.path.basename(inside).startswith(WORKER_AREA) and os.path.dirname(inside) == str(self.area)
        ):
            return None
        if not number.isdigit() or not name:
            return None
        client = None if os.path.basename(folder) == TOP else os.path.basename(folder)
        origin = os.path.join(self.hot / client if client else self.hot, name)
        return Candidate(claim, client, os.path.islink(claim), name=name, origin=origin)
