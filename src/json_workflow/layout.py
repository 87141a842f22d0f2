"""The data root's layout rules: json-workflow's own folders never receive what it delivers.

Its own folders are the hot folder (with the claim area inside it), the archive, the failed folder,
the logs folder and the state folder. Nothing delivered may land where files are taken from (they
would be taken again), and no destination may be in or over any of its own folders (a job whose Title
is JSON_PARSER_STATE must not land beside the journal). Checked when the configuration is loaded and
reloaded, on the paths as written (ignoring case) and then on disk, through symlinks and by identity;
a destination filled from a job's fields is checked the same way when it is filled (route.Router).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

# The failed folder of files from the top of the hot folder, whose client is not known.
UNKNOWN_CLIENT = "_unknown"


class Own(NamedTuple):
    """One of json-workflow's own folders: its configuration key, what people call it, where it is."""

    key: str
    name: str
    path: Path


def own_folders(hot: Path, archive: Path, failed: Path, logs: Path, state: Path) -> list[Own]:
    return [
        Own("paths.hot", "hot folder", hot),
        Own("paths.archive", "archive folder", archive),
        Own("paths.failed", "failed folder", failed),
        Own("paths.logs", "logs folder", logs),
        Own("paths.state", "state folder", state),
    ]


def within(folder: Path, other: Path) -> bool:
    """`folder` is `other` or inside it, ignoring case: a data root on exFAT or SMB ignores it too."""
    return Path(str(folder).casefold()).is_relative_to(Path(str(other).casefold()))


def trespass(folder: Path, own: Sequence[Own], inside_only: bool = False) -> Own | None:
    """The first of `own` that `folder` is in, is, or (unless `inside_only`) holds; None when it keeps clear."""
    for o in own:
        if within(folder, o.path) or (not inside_only and within(o.path, folder)):
            return o
    return None


def trespass_on_disk(folder: Path, own: Sequence[Own], inside_only: bool = False) -> tuple[Own, bool] | None:
    """Like `trespass`, on disk: the nearest folder at or above `folder` that is, by its identity, an own folder
    or a folder above one (reached through a bind mount or a link) stands for it, and the rest of the path is
    compared as written, ignoring case (FUSE exFAT gives each spelling of a name an identity of its own).
    Returns the own folder met, and True when `folder` is in or at it (False: it holds it)."""
    known: dict[tuple[int, int], Path] = {}  # the identities of the own folders and of the folders above them
    for o in own:
        for above in (o.path, *o.path.parents):
            if (identity := _identity(above)) is not None:
                known.setdefault(identity, above)
    for at in (folder, *folder.parents):
        if (identity := _identity(at)) is not None and identity in known:
            mapped = known[identity] / folder.relative_to(at)
            met = trespass(mapped, own, inside_only)
            return None if met is None else (met, within(mapped, met.path))
    return None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


# A routing rule's destination: (key, folder as written, its fixed part). A templated destination's fixed
# part is the folder its placeholders are filled in below: it may hold own folders (the values decide).
Destinations = Sequence[tuple[str, Path, Path]]


def problems(own: Sequence[Own], destinations: Destinations, on_disk: bool) -> list[str]:
    """What is wrong with the layout (one line per key), as written, then on disk: through symlinks, then by
    the folders' identity (a bind mount, a name that differs only in case on a filesystem that ignores it)."""
    found = _problems(own, destinations, lambda path: path)
    if on_disk and not found:
        found = _problems(own, destinations, lambda path: Path(os.path.realpath(path)))
    if on_disk and not found:
        for key, written, fixed in destinations:
            if (met := trespass_on_disk(fixed, own, inside_only=written != fixed)) is not None:
                o, inside = met
                found.append(
                    f"{key}: {written} {'is in or at' if inside else 'holds'} the {o.name} {o.path} ({o.key}) on disk, "
                    "by another name (a bind mount, or a name that differs only in case on a filesystem that "
                    "ignores case); json-workflow's own folders never receive copies: choose a folder outside them"
                )
    return found


def _problems(own: Sequence[Own], destinations: Destinations, resolve: Callable[[Path], Path]) -> list[str]:
    real = [o._replace(path=resolve(o.path)) for o in own]
    hot, shown = real[0], {o.key: _shown(o.path, r.path) for o, r in zip(own, real, strict=True)}
    found = []
    # The archive and the failed folder are delivered to: never into the hot folder.
    for o in real[1:3]:
        if within(o.path, hot.path):
            found.append(_into_hot(o.key, shown[o.key], within(hot.path, o.path), shown[hot.key]))
    # They get a folder per client, named after the files: no other of its folders may be one of those.
    for h, holder in enumerate(real[1:3], start=1):
        for i, o in enumerate(real):
            # Two of its folders that are one: said once per pair (the hot folder's case above).
            same = within(o.path, holder.path) and within(holder.path, o.path)
            if i != h and within(o.path, holder.path) and not (same and i < h):
                where = "the same folder as" if same else "inside"
                found.append(
                    f"{o.key}: {shown[o.key]} is {where} the {holder.name} {shown[holder.key]} ({holder.key}), where "
                    f"a folder is made for each client, named after the files; keep the {o.name} outside it"
                )
    for key, written, fixed in destinations:
        path, templated = resolve(fixed), written != fixed
        folder = str(written) if templated else _shown(written, path)
        if within(path, hot.path):
            found.append(_into_hot(key, folder, within(hot.path, path) and not templated, shown[hot.key]))
        elif (met := trespass(path, real, inside_only=templated)) is not None:
            inside = "is" if within(met.path, path) and not templated else "is inside"
            where = inside if within(path, met.path) else "holds"
            found.append(
                f"{key}: {folder} {where} the {met.name} {shown[met.key]} ({met.key}); json-workflow's own "
                "folders never receive copies: choose a folder outside them"
            )
    return found


def _into_hot(key: str, folder: str, same: bool, hot: str) -> str:
    where = "the hot folder" if same else "inside the hot folder"
    return (
        f"{key}: {folder} is {where} {hot}, so the files delivered there would be taken again; "
        "choose a folder outside it"
    )


def _shown(path: Path, real: Path) -> str:
    return str(path) if path == real else f"{path} ({real} on disk)"
