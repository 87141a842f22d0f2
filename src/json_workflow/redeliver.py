"""Redelivery (`replay --apply`): the copies a new rule adds, delivered to files already archived.

Exactly once, even when interrupted and run again: each copy is written to a fixed hidden temporary
(a rerun replaces its own), flushed, then published with a rename that never replaces; a file
already in the destination with the same bytes counts as delivered, one with other bytes is left
alone and reported. Nothing is ever removed but our own temporaries.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from json_workflow.config import Config
from json_workflow.delivery import durable
from json_workflow.delivery.folders import Folders
from json_workflow.delivery.model import Outcome
from json_workflow.intake import Source
from json_workflow.replay import Change
from json_workflow.store import Store
from json_workflow.store.rows import Batch, FinishedFile, Received


@dataclass
class Applied:
    delivered: list[str] = field(default_factory=list)  # final paths written now
    present: list[str] = field(default_factory=list)  # already there with the same bytes (an earlier run)
    conflicts: list[str] = field(default_factory=list)  # there with other bytes: left alone
    failed: list[str] = field(default_factory=list)  # "path: why" (a folder that cannot be made or written)


def apply(changes: Iterable[Change], config: Config, store: Store, applied: Applied) -> None:
    """Deliver the added copies of each change, and record each file so touched as a REPLAY reception."""
    folders = Folders(config)
    for change in changes:
        if not change.added:
            continue
        began = time.perf_counter()
        with open(change.path, "rb") as f:
            data = f.read()
        name = os.path.basename(change.path)
        routed = []
        for destination in change.added:
            final = os.path.join(destination.path, name)
            try:
                outcome = _deliver(data, destination.folder, final, config, folders)
            except OSError as e:
                applied.failed.append(f"{final}: {e.strerror or e}")
                continue
            getattr(applied, outcome).append(final)
            if outcome == "delivered":  # counted once: a copy an earlier run delivered is not counted again
                routed += [(rule, destination.path) for rule in destination.reasons]
        if routed:
            _record(store, change, routed, time.perf_counter() - began)


def _deliver(data: bytes, folder: Path, final: str, config: Config, folders: Folders) -> str:
    """ "delivered", "present" or "conflicts"; OSError when the folder cannot be made or written."""
    if os.path.lexists(final):
        return "present" if _same(final, data) else "conflicts"
    folders.ensure(folder)  # as the pipeline makes its folders: below the root, never outside
    temp = durable.fixed_temp_name(folder, os.path.basename(final))
    durable.remove_quietly(temp)  # an interrupted run's, never published
    durable.write_new(temp, data, config.permissions.file_mode)
    try:
        durable.fsync_path(temp)
        durable.move_new(temp, final)
    except FileExistsError:  # published meanwhile (another run)
        durable.remove_quietly(temp)
        return "present" if _same(final, data) else "conflicts"
    except BaseException:
        durable.remove_quietly(temp)
        raise
    durable.fsync_path(folder, folder=True)
    return "delivered"


def _same(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except OSError:
        return False


def _record(store: Store, change: Change, routed: list[tuple[str, str]], seconds: float) -> None:
    """The file as received again, from REPLAY, archived with the copies it got (statistics only)."""
    now = time.time()
    name = f"{change.client}/{os.path.basename(change.path)}"
    [row] = store.record_plan([], [Received(change.path, name, change.client, str(Source.REPLAY), now, None)])
    finished = FinishedFile(row, str(Outcome.ARCHIVED), seconds, change.client, routed=routed)
    store.finish_batch([], [finished], Batch(now, 1, seconds))
