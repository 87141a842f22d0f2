"""Delivering one job file: hidden copies in every folder, published by rename once they are durable.

Per batch: `prepare` decides every copy's temporary and final name (and creates folders), the journal
records them, `write` writes the temporaries, the batch is flushed, and `publish` renames them into
place. The claimed original is removed by the pipeline once the published names are flushed too.

The archive gets the claimed original itself when it can: the claim area is already a hidden place
on the same filesystem, so after the flush one rename publishes it, last of all its copies. That
spares a file creation, a write and a removal per job (a third of the kernel's work per file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from json_workflow.config import Config
from json_workflow.delivery import durable
from json_workflow.errors import DestinationError, Rejected, WorkflowError
from json_workflow.intake.scan import Candidate
from json_workflow.names import shown
from json_workflow.parse import Job
from json_workflow.route import Destination

UNKNOWN_CLIENT = "_unknown"
REASON_SUFFIX = ".reason.txt"
MOVE = "move"
# Failed names are {YYYYMMDD_HHMMSS}_{name}, or {YYYYMMDD_HHMMSS}-{n}_{name} when that one exists.
FAILED_PREFIX = re.compile(r"^\d{8}_\d{6}(?:-\d+)?_")


@dataclass(frozen=True, slots=True)
class Copy:
    """One file to publish: a hidden temporary and its final name. Kinds: copy, failed, reason, move.

    A move's temporary is the claimed original itself: it is never removed, only renamed into place.
    """

    temp: str
    final: str
    kind: str = "copy"

    @property
    def ours(self) -> bool:
        """True when the temporary was written for this copy (and is removed when the copy is dropped)."""
        return self.kind != MOVE


@dataclass
class Delivery:
    """What happens to one claimed file: its copies, or its place in the failed folder, or why it waits."""

    candidate: Candidate
    job: Job | None = None
    destinations: tuple[Destination, ...] = ()
    rejection: Rejected | None = None
    data: bytes | None = None
    info: os.stat_result | None = None  # the claimed file's, from when it was read
    copies: list[Copy] = field(default_factory=list)
    failed_as: str | None = None
    pending: WorkflowError | None = None  # why it waits: its destination, its writer, the journal
    left_claimed: bool = False  # partly published: the journal finishes it at the next start
    moved: bool = False  # the claimed original itself became the archived file
    vanished: bool = False
    source: str = ""
    started: float = 0.0
    worker: str = ""
    seconds: float = 0.0  # processing time, set when it is finished
    row: int | None = None  # its row in the statistics

    def discard(self) -> None:
        """Remove every temporary written for this file (it goes back to waiting)."""
        remove_temporaries(self.copies)
        self.copies = []


def remove_temporaries(copies: list[Copy]) -> None:
    """Remove the temporaries written for `copies`; a move's (the claimed original) is left alone."""
    for c in copies:
        if c.ours:
            durable.remove_quietly(c.temp)


class Folders:
    """Creates destination folders once, reserves failed names, remembers folders in trouble."""

    def __init__(self, config: Config):
        self.config = config
        self._made: set[Path] = set()
        self._broken: dict[Path, DestinationError] = {}
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
                    for name in _folder_names(folder):
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

    def trouble(self, folder: Path) -> DestinationError | None:
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

    def forget_trouble(self) -> None:
        """Try every folder again (the next scan or run)."""
        with self._lock:
            self._broken.clear()
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


def _folder_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return []


def prepare(d: Delivery, folders: Folders, now: float) -> DestinationError | None:
    """Decide every copy of the file and create the folders; returns new trouble to log, if any."""
    if d.rejection is not None:
        folder = folders.config.failed / (d.candidate.folder or UNKNOWN_CLIENT)
        targets = [folder]
    else:
        targets = [dest.folder for dest in d.destinations]
    for target in targets:
        if trouble := folders.trouble(target):
            d.pending = trouble
            return None
        try:
            folders.ensure(target)
        except OSError as e:
            d.pending, first = folders.mark_broken(target, e)
            return d.pending if first else None
    name = d.candidate.name
    if d.rejection is not None:
        final = folders.failed_name(folder, name, now)
        d.copies = [
            Copy(durable.temp_name(folder, name), final, "failed"),
            Copy(durable.temp_name(folder, name + REASON_SUFFIX), final + REASON_SUFFIX, "reason"),
        ]
    else:
        d.copies, move = [], None
        for dest in d.destinations:
            final = os.path.join(dest.path, name)
            if dest.is_archive and _movable(d.info, folders.device(dest.folder), folders.config.permissions.file_mode):
                move = Copy(d.candidate.path, final, MOVE)
            else:
                d.copies.append(Copy(durable.temp_name(dest.path, name), final))
        if move is not None:
            d.copies.append(move)  # last: the original leaves the claim area once every other copy is in place
    return None


def _movable(info: os.stat_result | None, archive_device: int, mode: int) -> bool:
    """True when the claimed original can become the archived file: same filesystem, configured mode, one link.

    The mode was set when the file was read, unless we may not (not its owner) or another link shares
    it (outside the data root, say): then it is copied, so that no other name shares the archived file.
    """
    return (
        info is not None and info.st_dev == archive_device and stat.S_IMODE(info.st_mode) == mode and info.st_nlink == 1
    )


def write(d: Delivery, folders: Folders, barrier: durable.Barrier, now: float) -> DestinationError | None:
    """Write the file's temporaries; on trouble remove them all and return it if it is new."""
    mode = folders.config.permissions.file_mode
    error: OSError
    for c in d.copies:
        folder = os.path.dirname(c.temp)
        try:
            if c.kind == "copy":
                assert d.data is not None  # read before any copy is planned
                durable.write_new(c.temp, d.data, mode)
            elif c.kind == MOVE:
                pass  # the claimed original: its mode was set when it was read
            elif c.kind == "reason":
                durable.write_new(c.temp, reason_file(d, now), mode)
            elif not _link_or_copy(d.candidate.path, c.temp, mode):
                barrier.add(folder)  # a symlink or FIFO: fsync cannot flush it, its folder entry is flushed
                continue
        except FileNotFoundError as e:
            if c.kind == "failed" and not os.path.lexists(d.candidate.path):
                d.vanished = True
                d.discard()
                return None
            error = e
        except OSError as e:
            error = e
        else:
            barrier.add(folder, c.temp)
            continue
        d.discard()
        d.pending, first = folders.mark_broken(Path(folder), error)
        return d.pending if first else None
    d.data = None
    return None


def _link_or_copy(path: str, temp: str, mode: int) -> bool:
    """Put the claimed file at `path` exactly at `temp`; True when it is a regular file (to fsync).

    Hard-linked when the filesystem allows and the file is ours alone with the configured mode, which a
    link shares; otherwise copied byte for byte (a symlink as a symlink), so another link's file (outside
    the data root, say) never gets our mode nor shares the failed file.
    """
    info = os.lstat(path)
    regular = stat.S_ISREG(info.st_mode)
    if regular and info.st_nlink == 1 and stat.S_IMODE(info.st_mode) != mode:
        with contextlib.suppress(OSError):  # not its owner: copied below, with the configured mode
            durable.set_mode(path, mode)
            info = os.lstat(path)
    shareable = not regular or (info.st_nlink == 1 and stat.S_IMODE(info.st_mode) == mode)  # a link shares both
    if not (shareable and durable.try_link(path, temp)):
        durable.copy_new(path, temp, mode)
    return regular


def reason_file(d: Delivery, now: float) -> bytes:
    """The reason file's content; it quotes input (a ClientCode, an OS error's name), so it never fails to encode."""
    assert d.rejection is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(now))
    return (
        f"file: {d.candidate.display}\n"
        f"from: {shown(d.candidate.origin)}\n"
        f"name: {shown(d.candidate.name)}\n"  # whole, even when the failed file's name had to be shortened
        f"stage: {d.rejection.stage}\n"
        f"reason: {d.rejection.reason}\n"
        f"when: {when}\n"
    ).encode("utf-8", "backslashreplace")


def publish(copies: list[Copy], barrier: durable.Barrier, resume: bool = False) -> tuple[str | None, bool]:
    """Rename flushed temporaries into place; returns the failed file's final name, if any, and
    whether the claimed original itself was moved into the archive (it left the claim area).

    When finishing a crashed run (`resume`), a temporary that no longer exists was published before.
    """
    failed_as, moved = None, False
    for c in copies:
        if resume and not os.path.lexists(c.temp):
            continue
        if c.kind == "failed":
            failed_as = _place_unused(c.temp, c.final)
        elif c.kind == "reason":
            os.replace(c.temp, failed_as + REASON_SUFFIX if failed_as else c.final)
        elif c.kind == MOVE:
            moved = _move(c, barrier)
        else:
            os.replace(c.temp, c.final)
        barrier.add(os.path.dirname(c.final))
    return failed_as, moved


def _move(c: Copy, barrier: durable.Barrier) -> bool:
    """Rename the claimed original into the archive; across mount points publish a flushed copy instead.

    A bind mount or container volume of the same filesystem has the same device number, but
    rename(2) refuses to cross it (EXDEV). The claim then stays until the pipeline removes it: returns
    True only when the claim was moved.
    """
    if os.path.islink(c.temp):  # swapped in since it was read: never published, left for an operator
        raise OSError(errno.ELOOP, "claimed file was replaced by a symlink", c.temp)
    try:
        os.replace(c.temp, c.final)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        # Named after the claim, so a retry after a crash replaces its own half-written copy.
        temp = durable.fixed_temp_name(os.path.dirname(c.final), os.path.basename(c.temp))
        durable.copy_over(c.temp, c.final, temp, stat.S_IMODE(os.stat(c.temp).st_mode))
        return False
    barrier.add(os.path.dirname(c.temp))
    return True


def _place_unused(temp: str, final: str) -> str:
    """Move `temp` to `final`, or to the next free -N name when another process took `final`."""
    folder, name = os.path.split(final)
    base = FAILED_PREFIX.sub("", name, count=1)
    stamp = name[:15]
    for n in range(1, 10_000):
        candidate = final if n == 1 else os.path.join(folder, f"{stamp}-{n}_{base}")
        try:
            durable.move_new(temp, candidate)
            return candidate
        except FileExistsError:
            if os.path.samestat(os.lstat(temp), os.lstat(candidate)):
                os.unlink(temp)  # linked before a crash, the temporary not yet removed
                return candidate
    raise FileExistsError(errno.EEXIST, "no free failed-file name", folder)


def fit_name(name: str) -> str:
    """Shorten a very long name so prefix, name and reason suffix stay within 255 bytes.

    The reason file keeps the full original name.
    """
    budget = 255 - len("YYYYMMDD_HHMMSS-9999_") - len(REASON_SUFFIX)
    if len(os.fsencode(name)) <= budget:
        return name
    stem, dot, ext = name.rpartition(".")
    return os.fsdecode(os.fsencode(stem)[: budget - len(os.fsencode(ext)) - 1]) + dot + ext


def original_name(failed_name: str) -> str:
    """The hot-folder name of a failed file: its timestamp prefix dropped."""
    return FAILED_PREFIX.sub("", failed_name, count=1)


def set_aside(d: Delivery, folders: Folders, reason: str, now: float) -> str:
    """Put a claimed file straight into the failed folder with its reason (outside any batch)."""
    d.rejection = Rejected(reason, "deliver")
    folder = folders.config.failed / (d.candidate.folder or UNKNOWN_CLIENT)
    folders.ensure(folder)
    mode, name = folders.config.permissions.file_mode, d.candidate.name
    temp, reason_temp = durable.temp_name(folder, name), durable.temp_name(folder, name + REASON_SUFFIX)
    try:
        if _link_or_copy(d.candidate.path, temp, mode):
            durable.fsync_path(temp)
        durable.write_new(reason_temp, reason_file(d, now), mode)
        durable.fsync_path(reason_temp)
        final = _place_unused(temp, folders.failed_name(folder, name, now))
        os.replace(reason_temp, final + REASON_SUFFIX)
    finally:  # whatever went wrong, no temporary is left; once placed, they are gone already
        durable.remove_quietly(temp)
        durable.remove_quietly(reason_temp)
    durable.fsync_path(folder, folder=True)
    return final
