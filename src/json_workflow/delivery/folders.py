"""Destination folders: created once, their client spelling, failed names reserved, trouble remembered."""

from __future__ import annotations

import dataclasses
import errno
import os
import threading
import time
from pathlib import Path

from json_workflow import durable
from json_workflow.config import Config
from json_workflow.delivery.failed import fit_name
from json_workflow.errors import DestinationError, EndpointError
from json_workflow.parse import Job


class Folders:
    """Creates destination folders once, reserves failed names, remembers folders in trouble."""

    def __init__(self, config: Config):
        self.config = config
        self._made: set[Path] = set()
        self._broken: dict[Path | str, DestinationError] = {}  # a folder, or a URL destination's URL
        self._not_before: dict[str, float] = {}  # a URL -> when it may be tried again (its Retry-After)
        self._reserved: set[str] = set()
        self._devices: dict[Path, int] = {}
        self._spellings: dict[str, str] = {}  # a client name, as it came and case-folded -> its folder's spelling
        self._lock = threading.Lock()

    def with_client_folder(self, job: Job, top: bool) -> Job:
        """`job` with its client spelt as that client's folder already is, so a client has one archive folder.

        The archive's spelling first, then the hot folder's; a new client from the top of the hot folder
        (its ClientCode only) is upper case, as TWIST writes client codes.
        """
        spelling = self._spellings.get(job.client)  # as it came before: no case folding
        if spelling is None:
            key = job.client.casefold()
            with self._lock:
                for folder in (self.config.archive, self.config.hot):
                    for name in folder_names(folder):
                        self._spellings.setdefault(name.casefold(), name)
                spelling = self._spellings.setdefault(key, job.client.upper() if top else job.client)
                self._spellings[job.client] = spelling
        return job if spelling == job.client else dataclasses.replace(job, client=spelling)

    def device(self, folder: Path) -> int:
        """The filesystem `folder` is on (an existing folder; remembered)."""
        device = self._devices.get(folder)
        if device is None:
            device = self._devices[folder] = os.stat(folder).st_dev
        return device

    def trouble(self, folder: Path | str) -> DestinationError | None:
        return self._broken.get(folder)

    def ensure(self, folder: Path) -> None:
        if folder not in self._made:
            durable.make_folder(folder, self.config.permissions.dir_mode, self._top(folder))
            self._made.add(folder)

    def _top(self, folder: Path) -> Path:
        """The folder that must already exist: a missing one means a missing mount, never created."""
        config = self.config
        if folder.is_relative_to(config.root):
            return config.root
        # An archive or failed folder elsewhere must exist; its client folders are ours to create.
        for top in (config.archive, config.failed):
            if folder.is_relative_to(top):
                return top
        return folder

    def mark_broken(self, folder: Path, error: OSError) -> tuple[DestinationError, bool]:
        """Record trouble with `folder`; True the first time, so it is logged once."""
        with self._lock:
            known = self._broken.get(folder)
            if known is not None:
                return known, False
            trouble = self._broken[folder] = DestinationError(str(folder), error)
            return trouble, True

    def mark_unreachable(self, url: str, trouble: EndpointError, now: float) -> bool:
        """Record trouble with a URL destination; True the first time, so it is logged once."""
        with self._lock:
            first = url not in self._broken
            self._broken[url] = trouble
            if trouble.after:
                self._not_before[url] = now + trouble.after
            return first

    def forget_trouble(self) -> None:
        """Try every folder again (the next scan or run), and every URL whose Retry-After has passed."""
        with self._lock:
            now = time.time()
            self._not_before = {url: t for url, t in self._not_before.items() if t > now}
            self._broken = {url: e for url, e in self._broken.items() if url in self._not_before}
            self._made.clear()
            self._devices.clear()

    def failed_name(self, folder: Path, name: str, now: float) -> str:
        """A failed-folder path that neither exists nor is promised to another file of this run."""
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now))
        base = fit_name(name)
        with self._lock:
            for n in range(1, 10_000):
                final = os.path.join(folder, f"{stamp}_{base}" if n == 1 else f"{stamp}-{n}_{base}")
                if final not in self._reserved and not os.path.lexists(final):
                    self._reserved.add(final)
                    return final
        raise FileExistsError(errno.EEXIST, "no free failed-file name", str(folder))


def folder_names(folder: Path) -> list[str]:
    """The names of the folders in `folder` (not hidden, not symlinks); none when it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return []
