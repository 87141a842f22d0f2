"""Delivering one job file: hidden copies in every folder, published by rename once they are durable.

Per batch: `prepare` decides every copy's temporary and final name (and creates folders), the journal
records them, `write` writes the temporaries, the batch is flushed, and `publish` renames them into
place. The claimed original is removed by the pipeline once the published names are flushed too.

The archive gets the claimed original itself when it can: the claim area is already a hidden place
on the same filesystem, so after the flush one rename publishes it, last of all its copies. That
spares a file creation, a write and a removal per job (a third of the kernel's work per file).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from json_workflow import durable
from json_workflow.delivery.failed import REASON_SUFFIX, link_or_copy, place_unused, reason_file
from json_workflow.delivery.flush import Barrier
from json_workflow.delivery.folders import Folders
from json_workflow.delivery.model import Copy, Delivery, Kind
from json_workflow.errors import DestinationError, Rejected
from json_workflow.routing.route import Destination

# Kinds compared for every copy, as module names: on Python 3.11 an Enum member's lookup goes through
# EnumType.__getattr__ and costs five times a global's.
_COPY, _MOVE, _FAILED, _REASON, _SEND = Kind.COPY, Kind.MOVE, Kind.FAILED, Kind.REASON, Kind.SEND


def prepare(d: Delivery, folders: Folders, now: float) -> DestinationError | None:
    """Decide every copy of the file and create the folders; returns new trouble to log, if any."""
    if d.rejection is not None:
        folder = folders.config.failed_folder(d.candidate.folder)
        targets = [folder]
    else:
        targets = [dest.folder for dest in d.destinations if dest.remote is None]
        if len(targets) < len(d.destinations):  # and URLs: one in trouble is tried again once it is due
            urls = [dest.path for dest in d.destinations if dest.remote is not None]
            if trouble := next(filter(None, map(folders.trouble, urls)), None):
                d.waiting_on = trouble
                return None
    for target in targets:
        if trouble := folders.trouble(target):
            d.waiting_on = trouble
            return None
        try:
            folders.ensure(target)
        except OSError as e:
            d.waiting_on, first = folders.mark_broken(target, e)
            return d.waiting_on if first else None
    name = d.candidate.name
    if d.rejection is not None:
        final = folders.failed_name(folder, name, now)
        d.copies = [
            Copy(durable.temp_name(folder, name), final, _FAILED),
            Copy(durable.temp_name(folder, name + REASON_SUFFIX), final + REASON_SUFFIX, _REASON),
        ]
    else:
        d.copies, move = [], None
        for dest in d.destinations:
            if dest.remote is not None:
                d.copies.append(_sent(d, dest))
                continue
            final = f"{dest.path}/{name}"  # a configured folder and a file's name: os.path.join's checks are moot
            if dest.is_archive and _movable(d.info, folders.device(dest.folder), folders.config.permissions.file_mode):
                move = Copy(d.candidate.path, final, _MOVE)
            else:
                d.copies.append(Copy(durable.temp_name(dest.path, name), final))
        if move is not None:
            d.copies.append(move)  # last: the original leaves the claim area once every other copy is in place
    return None


def _sent(d: Delivery, dest: Destination) -> Copy:
    """The copy of `d` to a URL destination: its key, and its URL as shown (no query values: no secret)."""
    assert dest.remote is not None and d.data is not None and d.job is not None
    rule = dest.remote[0]
    written = d.info.st_mtime_ns if d.info is not None else 0
    return Copy(copy_key(rule.name, d.job.client, d.candidate.name, hashlib.sha256(d.data).hexdigest(), written),
                dest.path, _SEND)  # fmt: skip


def copy_key(rule: str, client: str, name: str, digest: str, written_ns: int) -> str:
    """One version of one file to one rule: the same after any crash and on every retry; another for the
    same bytes written again (a new modification time), or for another rule."""
    text = "\0".join((rule, client, name, digest, str(written_ns)))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _movable(info: os.stat_result | None, archive_device: int, mode: int) -> bool:
    """True when the claimed original can become the archived file: same filesystem, configured mode, one link.

    The mode was set when the file was read, unless we may not (not its owner) or another link shares
    it (outside the data root, say): then it is copied, so that no other name shares the archived file.
    """
    return (
        info is not None and info.st_dev == archive_device and stat.S_IMODE(info.st_mode) == mode and info.st_nlink == 1
    )


def write(d: Delivery, folders: Folders, barrier: Barrier, now: float) -> DestinationError | None:
    """Write the file's temporaries; on trouble remove them all and return it if it is new."""
    mode = folders.config.permissions.file_mode
    for c in d.copies:
        if c.kind == _SEND:  # sent before anything is written (delivery.remote)
            continue
        folder = durable.parent(c.temp)
        try:
            flushable = _WRITERS[c.kind](d, c, mode, now)
        except FileNotFoundError as e:
            if c.kind == _FAILED and not os.path.lexists(d.candidate.path):
                d.vanished = True
                d.discard()
                return None
            error: OSError = e
        except OSError as e:
            error = e
        else:
            if flushable:
                barrier.add(folder, c.temp)
            else:  # a symlink or FIFO set aside cannot be fsynced: its folder entry is flushed instead
                barrier.add(folder)
            continue
        d.discard()
        d.waiting_on, first = folders.mark_broken(Path(folder), error)
        return d.waiting_on if first else None
    d.data = None
    return None


def _write_copy(d: Delivery, c: Copy, mode: int, now: float) -> bool:
    assert d.data is not None  # read before any copy is planned
    durable.write_new(c.temp, d.data, mode)
    return True


def _write_move(d: Delivery, c: Copy, mode: int, now: float) -> bool:
    return True  # the claimed original itself: its mode was set when it was read


def _write_failed(d: Delivery, c: Copy, mode: int, now: float) -> bool:
    return link_or_copy(d.candidate.path, c.temp, mode)


def _write_reason(d: Delivery, c: Copy, mode: int, now: float) -> bool:
    durable.write_new(c.temp, reason_file(d, now), mode)
    return True


# Writes a copy's temporary; True when it is a regular file, to be fsynced.
_WRITERS: dict[Kind, Callable[[Delivery, Copy, int, float], bool]] = {
    _COPY: _write_copy,
    _MOVE: _write_move,
    _FAILED: _write_failed,
    _REASON: _write_reason,
}


def publish(copies: list[Copy], barrier: Barrier, resume: bool = False) -> tuple[str | None, bool]:
    """Rename flushed temporaries into place; returns the failed file's final name, if any, and
    whether the claimed original itself was moved into the archive (it left the claim area).

    When finishing a crashed run (`resume`), a temporary that no longer exists was published before.
    """
    failed_as, moved = None, False
    for c in copies:
        if c.kind == _SEND or (resume and not os.path.lexists(c.temp)):  # sent before any copy was written
            continue
        if c.kind == _FAILED:
            failed_as = place_unused(c.temp, c.final)
        elif c.kind == _REASON:
            os.replace(c.temp, failed_as + REASON_SUFFIX if failed_as else c.final)
        elif c.kind == _MOVE:
            moved = _move(c, barrier)
        else:
            os.replace(c.temp, c.final)
        barrier.add(durable.parent(c.final))
    return failed_as, moved


def _move(c: Copy, barrier: Barrier) -> bool:
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
    barrier.add(durable.parent(c.temp))
    return True


def set_aside(d: Delivery, folders: Folders, reason: str, now: float) -> str:
    """Put a claimed file straight into the failed folder with its reason (outside any batch)."""
    d.rejection = Rejected(reason, "deliver")
    folder = folders.config.failed_folder(d.candidate.folder)
    folders.ensure(folder)
    mode, name = folders.config.permissions.file_mode, d.candidate.name
    temp, reason_temp = durable.temp_name(folder, name), durable.temp_name(folder, name + REASON_SUFFIX)
    try:
        if link_or_copy(d.candidate.path, temp, mode):
            durable.fsync_path(temp)
        durable.write_new(reason_temp, reason_file(d, now), mode)
        durable.fsync_path(reason_temp)
        final = place_unused(temp, folders.failed_name(folder, name, now))
        os.replace(reason_temp, final + REASON_SUFFIX)
    finally:  # whatever went wrong, no temporary is left; once placed, they are gone already
        durable.remove_quietly(temp)
        durable.remove_quietly(reason_temp)
    durable.fsync_path(folder, folder=True)
    return final
