"""The failed folder: a rejected file's bytes, exactly, and a reason file beside it.

Failed names are {YYYYMMDD_HHMMSS}_{name}, or {YYYYMMDD_HHMMSS}-{n}_{name} when that one exists;
a name too long for that is shortened, and the reason file keeps it whole (`retry` restores it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time

from json_workflow import durable
from json_workflow.delivery.model import Delivery
from json_workflow.names import shown

REASON_SUFFIX = ".reason.txt"
FAILED_PREFIX = re.compile(r"^\d{8}_\d{6}(?:-\d+)?_")


def fit_name(name: str) -> str:
    """Shorten a very long name so prefix, name and reason suffix stay within 255 bytes."""
    budget = 255 - len("YYYYMMDD_HHMMSS-9999_") - len(REASON_SUFFIX)
    if len(os.fsencode(name)) <= budget:
        return name
    stem, dot, ext = name.rpartition(".")
    return os.fsdecode(os.fsencode(stem)[: budget - len(os.fsencode(ext)) - 1]) + dot + ext


def original_name(failed_name: str) -> str:
    """The hot-folder name of a failed file: its timestamp prefix dropped."""
    return FAILED_PREFIX.sub("", failed_name, count=1)


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


def link_or_copy(path: str, temp: str, mode: int) -> bool:
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


def place_unused(temp: str, final: str) -> str:
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
