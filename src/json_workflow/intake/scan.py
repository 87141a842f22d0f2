"""Finding job files in the hot folder (a streamed scan) and reading one; never following a symlink."""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from json_workflow.errors import Rejected, StillWriting
from json_workflow.intake.stability import writer_has_open, writers_visible
from json_workflow.logs import log
from json_workflow.names import shown

# Editors and transfer tools write these beside the real file; they are never ours to touch.
_TEMP_PREFIXES = (".", "~")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A job file: where it is now (`path`), its client folder (None at the top) and where it arrived."""

    path: str
    folder: str | None
    symlink: bool = False
    name: str = ""  # its name in the hot folder (a claimed file's path has a sequence number in front)
    origin: str = ""  # its path in the hot folder

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", os.path.basename(self.path))
        if not self.origin:
            object.__setattr__(self, "origin", self.path)

    @property
    def claimed(self) -> bool:
        return self.path != self.origin

    @property
    def display(self) -> str:
        """The path as the log and the statistics show it: CLIENT/name.json, printable."""
        return shown(f"{self.folder}/{self.name}" if self.folder else self.name)


def is_job_name(name: str) -> bool:
    """True for `*.json` (any case) that is not hidden or an editor/transfer temporary."""
    return name[-5:].lower() == ".json" and not name.startswith(_TEMP_PREFIXES)


def scan(hot: Path, keep: Callable[[str], bool] | None = None) -> Iterator[Candidate]:
    """Yield every job file in `hot` and its client folders, streaming (never the whole listing).

    `keep`: only the files whose name it keeps (a worker process's share), looked at before anything else.
    """
    with os.scandir(hot) as top:
        for entry in top:
            if entry.name.startswith(_TEMP_PREFIXES):
                continue
            if keep is not None and not entry.is_dir(follow_symlinks=False) and not keep(entry.name):
                continue
            if entry.is_symlink():
                # A link in the hot folder, to a folder or a file, is set aside and never followed.
                if is_job_name(entry.name) or entry.is_dir():
                    yield Candidate(entry.path, None, symlink=True)
            elif entry.is_dir(follow_symlinks=False):
                yield from _scan_client(entry, keep)
            elif is_job_name(entry.name):
                yield Candidate(entry.path, None, False, entry.name, entry.path)
            else:
                _ignored(entry.name)


def _scan_client(folder: os.DirEntry, keep: Callable[[str], bool] | None) -> Iterator[Candidate]:
    try:
        entries = os.scandir(folder.path)
    except FileNotFoundError:  # removed while we looked
        return
    with entries:
        for entry in entries:
            if keep is not None and not keep(entry.name):
                continue
            # A sub-folder named like a job is not a job; sub-folders are never entered.
            if is_job_name(entry.name) and not entry.is_dir(follow_symlinks=False):
                yield Candidate(entry.path, folder.name, entry.is_symlink(), entry.name, entry.path)
            else:
                _ignored(f"{folder.name}/{entry.name}")


def _ignored(name: str) -> None:
    """Said at --log-level debug: the first question about a file left in the hot folder is why."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("Ignored %s: not a job file (*.json), or a hidden or temporary name, or a folder", shown(name))


def candidate_at(hot: Path, path: str, symlink: bool | None = None) -> Candidate:
    """The candidate for a path an event or the tracker reported (one client folder down, or the top);
    `symlink`: what an lstat of it just said, if one did."""
    parent, _, name = path.rpartition("/")
    folder = None if parent == str(hot) else parent.rpartition("/")[2]
    return Candidate(path, folder, os.path.islink(path) if symlink is None else symlink, name, path)


class JobFile(NamedTuple):
    """A job file's bytes and status, and whether the kernel confirmed that no one was writing it.

    It cannot where other hosts write (network shares, FUSE) or the file is not ours to lease."""

    data: bytes
    info: os.stat_result
    closed: bool

    def young(self, seconds: float, now: float) -> bool:
        """Modified within the last `seconds`: a writer the kernel cannot see (another host) may not be done."""
        return now - self.info.st_mtime < seconds


def read_job_file(path: str, limit: int, mode: int | None = None) -> JobFile:
    """Read a job file and its status without following a symlink; Rejected unless a small regular file.

    StillWriting when a local process has it open for writing or it changed while it was read. Read
    once claimed, a file open for writing by nobody stays so: no one else can open it by its hot-folder
    name any more. With `mode`, the file also gets that mode where we may set it (an archived original
    keeps it), unless another link shares it (its mode is not ours to change).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Rejected("symlink: links are never followed", "intake") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Rejected("not a regular file", "intake")
        if info.st_size > limit:
            raise Rejected(f"file is {info.st_size} bytes, over max_file_bytes ({limit})", "intake")
        writer = writer_has_open(fd)
        if writer:
            raise StillWriting("still open for writing by another process")
        closed = writer is False and writers_visible(path, info.st_dev)
        if mode is not None and stat.S_IMODE(info.st_mode) != mode and info.st_nlink == 1:
            try:
                os.fchmod(fd, mode)
                info = os.fstat(fd)
            except OSError:  # not its owner: the archive gets a copy instead
                pass
        chunks, total, want = [], 0, max(info.st_size + 1, 65536)
        while chunk := os.read(fd, want):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise Rejected(f"file grew past max_file_bytes ({limit}) while being read", "intake")
            if len(chunk) < want:  # a short read of a regular file is its end: no second call to learn it
                break
        if not closed:  # a writer no lease sees may be at it: did the file change while it was read?
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != (info.st_size, info.st_mtime_ns):
                raise StillWriting("it changed while it was read")
        return JobFile(b"".join(chunks), info, closed)
    finally:
        os.close(fd)
