"""The data root's one layout rule: nothing json-workflow delivers may land where it takes files from.

Checked when the configuration is loaded and reloaded, on the paths as written and then through
symlinks on disk, so that a destination, archive or failed folder never feeds the hot folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path


def feeding_hot(
    hot: Path,
    delivered: Sequence[tuple[str, Path]],
    per_client: Sequence[tuple[str, str, Path]],
    on_disk: bool,
) -> list[str]:
    """Problems (naming each key) with folders that feed the hot folder, as written, then through symlinks.

    `delivered` are (key, folder) pairs that files are delivered to; `per_client` are (key, name, folder)
    of the folders that get a folder per client, named after the files: the hot folder must not be inside them.
    """
    problems = _feeding(hot, delivered, per_client, lambda path: path)
    if on_disk and not problems:
        problems = _feeding(hot, delivered, per_client, lambda path: Path(os.path.realpath(path)))
    return problems


def _feeding(
    hot_path: Path,
    delivered: Sequence[tuple[str, Path]],
    per_client: Sequence[tuple[str, str, Path]],
    resolve: Callable[[Path], Path],
) -> list[str]:
    hot = resolve(hot_path)
    problems = []
    for key, folder in delivered:
        real = resolve(folder)
        if real.is_relative_to(hot):
            where = "the hot folder" if real == hot else "inside the hot folder"
            problems.append(
                f"{key}: {_shown(folder, real)} is {where} {_shown(hot_path, hot)}, so the files "
                "delivered there would be taken again; choose a folder outside it"
            )
    for key, name, folder in per_client:
        real = resolve(folder)
        if real != hot and hot.is_relative_to(real):
            problems.append(
                f"paths.hot: {_shown(hot_path, hot)} is inside the {name} folder {_shown(folder, real)} "
                f"({key}), where a folder is made for each client, named after the files; "
                "keep the hot folder outside it"
            )
    return problems


def _shown(path: Path, real: Path) -> str:
    return str(path) if path == real else f"{path} ({real} on disk)"
