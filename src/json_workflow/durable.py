"""Making writes durable: hidden temporaries written, flushed, renamed into place.

A batch of files shares its flushes: see delivery.flush's Barrier.

`move_new` places a file at a name that must not exist, on filesystems with or without hard links.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import stat
from collections.abc import Iterator
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28 and later
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # never through a link, never stuck on a FIFO
_counter = itertools.count()

TEMP_SUFFIX = ".jwtmp"
# Why link(2) may say no: no hard links on this filesystem (exFAT: EPERM; SMB shares, FUSE: EOPNOTSUPP,
# ENOSYS), another filesystem (EXDEV), the file's link limit (EMLINK), or fs.protected_hardlinks refusing
# a user who neither owns the file nor may write it (EPERM).
LINK_REFUSED = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV})


def temp_name(folder: Path | str, name: str) -> str:
    """A hidden name in `folder`, unique to this process, that scans and downstream tools skip."""
    return f"{folder}/.{_hint(name)}.{_pid}-{next(_counter)}{TEMP_SUFFIX}"


_pid = os.getpid()  # asked once, not per copy; a forked process asks again


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def parent(path: str) -> str:
    """The folder of an absolute, normalized path: os.path.dirname at a fifth of its cost, for the per-file path."""
    return path[: path.rindex("/")] or "/"


def fixed_temp_name(folder: Path | str, name: str) -> str:
    """A hidden name in `folder` that is the same every time for `name`: a retry replaces its own."""
    return os.path.join(folder, f".{_hint(name)}{TEMP_SUFFIX}")


def _hint(name: str) -> str:
    # The name is only a hint for a human; it is cut so the whole stays under the 255-byte limit.
    return name if len(name) <= 30 else os.fsdecode(os.fsencode(name)[:120])  # 30 characters fit in 120 bytes


@contextlib.contextmanager
def _new_file(path: str, mode: int) -> Iterator[int]:
    """Create `path` (it must not exist) with permissions `mode` whatever the umask; removed on error."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        yield fd
    except BaseException:
        os.close(fd)
        remove_quietly(path)
        raise
    os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_new(path: str, data: bytes, mode: int) -> None:
    """Write `data` to a new file `path`."""
    with _new_file(path, mode) as fd:
        _write_all(fd, data)


def copy_new(source: str, path: str, mode: int) -> bool:
    """Copy `source` to a new `path` where it cannot be hard-linked; True when it is a regular file (to fsync).

    A symlink is copied as a link, never followed; a FIFO or socket as a new one (it holds no bytes).
    """
    info = os.lstat(source)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), path)
    elif not stat.S_ISREG(info.st_mode):
        os.mknod(path, stat.S_IFMT(info.st_mode) | mode, info.st_rdev)
    else:
        with open(os.open(source, _READ), "rb") as src, _new_file(path, mode) as out:
            while chunk := src.read(1 << 20):
                _write_all(out, chunk)
        return True
    return False


def same_bytes(path: str, other: str, chunk: int = 1 << 20) -> bool:
    """Whether two regular files hold the same bytes (neither read through a link); False when one cannot be read."""
    try:
        with open(os.open(path, _READ), "rb") as a, open(os.open(other, _READ), "rb") as b:
            first, second = os.fstat(a.fileno()), os.fstat(b.fileno())
            if not (stat.S_ISREG(first.st_mode) and stat.S_ISREG(second.st_mode)) or first.st_size != second.st_size:
                return False
            while block := a.read(chunk):
                if block != b.read(len(block)):
                    return False
            return True
    except OSError:
        return False


def holds(path: str, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data` (never read through a link); False when it cannot be read."""
    try:
        with open(os.open(path, _READ), "rb") as f:
            return f.read(len(data) + 1) == data
    except OSError:
        return False


def try_link(source: str, path: str) -> bool:
    """Hard-link `source` (a symlink itself, never its target) as `path`; False where link(2) is refused."""
    try:
        os.link(source, path, follow_symlinks=False)
    except OSError as e:
        if e.errno not in LINK_REFUSED:
            raise
        return False
    return True


def move_new(source: str, target: str) -> None:
    """Move `source` to `target`, never replacing a file there: FileExistsError, `source` left alone, if one is.

    Across filesystems a flushed copy (with `source`'s mode) is placed the same way, then `source` removed.
    """
    if try_link(source, target):  # atomic; after a crash before the unlink both names hold the same file
        os.unlink(source)
        return
    try:
        rename_new(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        temp = temp_name(os.path.dirname(target), os.path.basename(target))
        try:
            if copy_new(source, temp, stat.S_IMODE(os.lstat(source).st_mode)):
                fsync_path(temp)
            move_new(temp, target)
        finally:
            remove_quietly(temp)
        os.unlink(source)


def rename_new(source: str, target: str) -> None:
    """rename(2) that never replaces `target`, for filesystems without hard links."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # these: the filesystem lacks the flag
            raise OSError(err, os.strerror(err), source, None, target)
    # Neither links nor the flag (FUSE exFAT, some SMB servers): check, then rename. Not atomic, which is
    # acceptable: failed names are made only by the one instance that holds the run lock, and in the hot
    # folder only a file dropped (or retried) in the microseconds between the check and the rename could
    # be replaced; such a filesystem offers no atomic way to refuse it.
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    os.rename(source, target)


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write `path` whole or not at all: a flushed temporary renamed over it; an OSError names `path`."""
    temp = temp_name(path.parent, path.name)
    try:
        write_new(temp, data, mode)
        _install(temp, str(path))
        fsync_path(path.parent, folder=True)
    except OSError as e:  # the temporary's name means nothing to whoever reads the error
        raise OSError(e.errno, e.strerror, str(path)) from None


def copy_over(source: str, path: str, temp: str, mode: int) -> None:
    """Copy `source` over `path` whole or not at all, through `temp` (replaced if a crash left it)."""
    remove_quietly(temp)
    copy_new(source, temp, mode)
    _install(temp, path)


def _install(temp: str, path: str) -> None:
    """Flush `temp` and rename it over `path`; the temporary is removed when that fails."""
    try:
        fsync_path(temp)
        os.replace(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise


def make_folder(folder: Path, mode: int, top: Path) -> None:
    """Create `folder` and its missing parents down from `top`, which must already exist."""
    if folder.is_dir():
        return
    if not top.is_dir():
        raise FileNotFoundError(errno.ENOENT, "folder (or the mount it lives on) is missing", str(top))
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.is_dir() or parent == top:
            break
        missing.append(parent)
    for parent in reversed(missing):
        try:
            os.mkdir(parent, mode)
        except FileExistsError:
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(parent)) from None
            continue
        set_mode(parent, mode, folder=True)  # mkdir's mode is filtered by the umask


def remove_quietly(path: str) -> None:
    """Remove a temporary we own; a missing file is fine."""
    try:
        os.unlink(path)
    except OSError:
        pass


def set_mode(path: str | Path, mode: int, folder: bool = False) -> None:
    """Give `path` the configured `mode` through a descriptor: chmod(2) would follow a symlink swapped in."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if folder else 0)
    fd = os.open(path, flags)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def fsync_path(path: str | Path, folder: bool = False) -> None:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if folder else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
