"""Delivering one job file: hidden copies staged in every folder, published by rename once durable.

A file is staged by one worker, then the batch it belongs to is flushed (see durable.Barrier), then
published. The original is removed by the caller only after the published names are flushed too.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from json_workflow import durable
from json_workflow.config import Config
from json_workflow.errors import DestinationError, Rejected
from json_workflow.intake import Candidate
from json_workflow.parse import Job
from json_workflow.route import Destination

UNKNOWN_CLIENT = "_unknown"
REASON_SUFFIX = ".reason.txt"
# Failed names are {YYYYMMDD_HHMMSS}_{name}, or {YYYYMMDD_HHMMSS}-{n}_{name} when that one exists.
FAILED_PREFIX = re.compile(r"^\d{8}_\d{6}(?:-\d+)?_")


@dataclass
class Copy:
    """A staged copy: the hidden temporary and the name it will be published as."""

    temp: str
    final: str


@dataclass
class Delivery:
    """What happens to one candidate: its copies, or its place in the failed folder, or why it waits."""

    candidate: Candidate
    job: Job | None = None
    destinations: list[Destination] = field(default_factory=list)
    rejection: Rejected | None = None
    copies: list[Copy] = field(default_factory=list)
    failed_temp: str | None = None
    reason_temp: str | None = None
    failed_folder: Path | None = None
    failed_as: str | None = None
    pending: DestinationError | None = None
    vanished: bool = False
    size: int = 0
    started: float = 0.0
    worker: str = ""

    def discard(self) -> None:
        """Remove every temporary staged for this file (it stays pending in the hot folder)."""
        for c in self.copies:
            durable.remove_quietly(c.temp)
        for temp in (self.failed_temp, self.reason_temp):
            if temp:
                durable.remove_quietly(temp)
        self.copies, self.failed_temp, self.reason_temp = [], None, None


class Folders:
    """Creates destination folders once and remembers which ones are in trouble during a run."""

    def __init__(self, config: Config):
        self.config = config
        self._made: set[Path] = set()
        self._broken: dict[Path, DestinationError] = {}
        self._lock = threading.Lock()

    def trouble(self, folder: Path) -> DestinationError | None:
        return self._broken.get(folder)

    def ensure(self, folder: Path) -> None:
        if folder in self._made:
            return
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
        """Record trouble with `folder`; True the first time, so it is logged once per run."""
        with self._lock:
            known = self._broken.get(folder)
            if known is not None:
                return known, False
            trouble = self._broken[folder] = DestinationError(str(folder), error)
            return trouble, True


def stage_copies(d: Delivery, data: bytes, folders: Folders, barrier: durable.Barrier, on_trouble) -> None:
    """Write a hidden copy of `data` into every destination; on trouble, discard them all."""
    mode = folders.config.permissions.file_mode
    for dest in d.destinations:
        trouble = folders.trouble(dest.folder)
        if trouble is None:
            try:
                folders.ensure(dest.folder)
                temp = durable.temp_name(dest.folder, d.candidate.name)
                durable.write_new(temp, data, mode)
                barrier.add(dest.folder, temp)
                d.copies.append(Copy(temp, os.path.join(dest.folder, d.candidate.name)))
                continue
            except OSError as e:
                trouble, first = folders.mark_broken(dest.folder, e)
                if first:
                    on_trouble(trouble)
        d.discard()
        d.pending = trouble
        return


def stage_failure(d: Delivery, folders: Folders, barrier: durable.Barrier, on_trouble, now: float) -> None:
    """Stage the rejected file (a hard link, or a copy across filesystems) and its reason in the failed folder."""
    config = folders.config
    folder = config.failed / (d.candidate.folder or UNKNOWN_CLIENT)
    if trouble := folders.trouble(folder):
        d.pending = trouble
        return
    try:
        folders.ensure(folder)
        d.failed_temp = durable.temp_name(folder, d.candidate.name)
        is_link = _link_or_copy(d.candidate, d.failed_temp, config.permissions.file_mode)
        if not is_link:  # the link shares the original's inode; operators need to read it with the configured mode
            os.chmod(d.failed_temp, config.permissions.file_mode)
        d.reason_temp = durable.temp_name(folder, d.candidate.name + REASON_SUFFIX)
        durable.write_new(d.reason_temp, reason_text(d, now).encode(), config.permissions.file_mode)
    except FileNotFoundError as e:
        d.discard()
        if not os.path.lexists(d.candidate.path):
            d.vanished = True
            return
        d.pending, first = folders.mark_broken(folder, e)
    except OSError as e:
        d.discard()
        d.pending, first = folders.mark_broken(folder, e)
    else:
        d.failed_folder = folder
        # fsync cannot open a symlink without following it; its folder entry is flushed all the same.
        barrier.add(folder, None if is_link else d.failed_temp)
        barrier.add(folder, d.reason_temp)
        return
    if first:
        on_trouble(d.pending)


def _link_or_copy(candidate: Candidate, temp: str, mode: int) -> bool:
    """Put the file's exact bytes (or the link itself) at `temp`; True when it is a symlink."""
    is_link = os.path.islink(candidate.path)
    try:
        os.link(candidate.path, temp, follow_symlinks=False)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        if is_link:
            os.symlink(os.readlink(candidate.path), temp)
        else:
            durable.copy_new(candidate.path, temp, mode)
    return is_link


def reason_text(d: Delivery, now: float) -> str:
    assert d.rejection is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(now))
    return (
        f"file: {d.candidate.display}\n"
        f"from: {d.candidate.path}\n"
        f"stage: {d.rejection.stage}\n"
        f"reason: {d.rejection.reason}\n"
        f"when: {when}\n"
    )


def publish(d: Delivery, barrier: durable.Barrier, now: float) -> None:
    """Rename the flushed temporaries into place (never overwriting a failed file)."""
    for c in d.copies:
        os.replace(c.temp, c.final)
        barrier.add(os.path.dirname(c.final))
    if d.failed_temp:
        d.failed_as = _publish_failed(d, now)
        barrier.add(d.failed_folder)


def _publish_failed(d: Delivery, now: float) -> str:
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now))
    base = _fit(d.candidate.name)
    for n in range(1, 10_000):
        name = f"{stamp}_{base}" if n == 1 else f"{stamp}-{n}_{base}"
        final = os.path.join(d.failed_folder, name)
        try:
            os.link(d.failed_temp, final, follow_symlinks=False)
        except FileExistsError:
            continue
        os.unlink(d.failed_temp)
        os.replace(d.reason_temp, final + REASON_SUFFIX)
        d.failed_temp = d.reason_temp = None
        return final
    raise FileExistsError(errno.EEXIST, "no free failed-file name", d.failed_folder)


def _fit(name: str) -> str:
    """Shorten a very long name so prefix, name and reason suffix stay within 255 bytes.

    The reason file keeps the full original name.
    """
    budget = 255 - len("YYYYMMDD_HHMMSS-9999_") - len(REASON_SUFFIX)
    if len(name.encode()) <= budget:
        return name
    stem, dot, ext = name.rpartition(".")
    return stem.encode()[: budget - len(ext) - 1].decode(errors="ignore") + dot + ext


def original_name(failed_name: str) -> str:
    """The hot-folder name of a failed file: its timestamp prefix dropped."""
    return FAILED_PREFIX.sub("", failed_name, count=1)
