"""Crash recovery: the claim area and the journal let the next run finish a crashed one exactly."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Consumer, drop, failed_entries, leftovers, make_config, query, wait_for
from json_workflow.config import build
from json_workflow.run import run_once
from json_workflow.samples import backlog, job
from json_workflow.store import Store, open_store

RANK_ROUTE = "SYNC/MAKE/Monday Rank"


pytestmark = pytest.mark.usefixtures("backend")  # each test on SQLite and on PostgreSQL


def claim_file(root: Path, client: str, name: str, data: bytes, number: int = 1) -> Path:
    """A file as a crashed run left it: moved into the claim area."""
    folder = make_config(root).claim_area / client
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number:020d}_{name}"
    path.write_bytes(data)
    return path


def journal(root: Path) -> Store:
    (root / "JSON_PARSER_STATE").mkdir(exist_ok=True)
    return open_store(make_config(root))


def test_claimed_file_without_journal_entries_is_processed(root):
    data = job("RANK", "PRODUCTION", 1)
    claim_file(root, "RANK", "a.json", data)
    summary = run_once(make_config(root))
    assert (summary.archived, summary.routed) == (1, 1)
    assert (root / "JSON_STORE/RANK/a.json").read_bytes() == data
    assert (root / RANK_ROUTE / "a.json").read_bytes() == data
    assert not make_config(root).claim_area.exists()


def test_planned_copies_are_written_again_never_trusted(root):
    data = job("RANK", "PRODUCTION", 1)
    claim = claim_file(root, "RANK", "a.json", data)
    archive = root / "JSON_STORE/RANK"
    archive.mkdir(parents=True)
    partial = archive / ".a.json.1-1.jwtmp"
    partial.write_bytes(data[:10])
    j = journal(root)
    j.record_plan([(str(claim), str(partial), str(archive / "a.json"), "copy")])
    j.close()
    run_once(make_config(root))
    assert (archive / "a.json").read_bytes() == data
    assert not partial.exists()
    assert leftovers(root) == []


def test_staged_copies_are_published_and_taken_ones_not_delivered_again(root):
    data = job("RANK", "PRODUCTION", 1)
    claim = claim_file(root, "RANK", "a.json", data)
    archive, route = root / "JSON_STORE/RANK", root / RANK_ROUTE
    archive.mkdir(parents=True)
    route.mkdir(parents=True)
    waiting = archive / ".a.json.1-1.jwtmp"
    waiting.write_bytes(data)
    # The Monday copy was published before the crash and a downstream tool has already taken it.
    j = journal(root)
    j.record_plan(
        [
            (str(claim), str(waiting), str(archive / "a.json"), "copy"),
            (str(claim), str(route / ".a.json.1-2.jwtmp"), str(route / "a.json"), "copy"),
        ]
    )
    j.mark_staged([str(claim)])
    j.close()
    summary = run_once(make_config(root))
    assert summary.archived == 1
    assert (archive / "a.json").read_bytes() == data
    assert not (route / "a.json").exists()
    assert not claim.exists()
    assert journal(root).claims() == []


def test_staged_failed_file_is_published_once(root):
    claim = claim_file(root, "RANK", "bad.json", b"{")
    failed = root / "JSON_FAILED/RANK"
    failed.mkdir(parents=True)
    temp, reason = failed / ".bad.json.1-1.jwtmp", failed / ".bad.json.reason.txt.1-2.jwtmp"
    os.link(claim, temp)
    reason.write_text("reason: invalid JSON\n")
    final = failed / "20240305_060708_bad.json"
    j = journal(root)
    j.record_plan(
        [(str(claim), str(temp), str(final), "failed"), (str(claim), str(reason), str(final) + ".reason.txt", "reason")]
    )
    j.mark_staged([str(claim)])
    j.close()
    summary = run_once(make_config(root))
    assert summary.failed == 1
    assert failed_entries(root, "bad.json") == [final]
    assert final.read_bytes() == b"{"
    assert (failed / "20240305_060708_bad.json.reason.txt").exists()
    assert leftovers(root) == []


def test_planned_entries_of_a_removed_claim_are_forgotten_and_temporaries_removed(root):
    archive = root / "JSON_STORE/RANK"
    archive.mkdir(parents=True)
    stray = archive / ".a.json.1-1.jwtmp"
    stray.write_bytes(b"x")
    gone = make_config(root).claim_area / "RANK/00000000000000000001_a.json"  # removed before the crash
    j = journal(root)
    j.record_plan([(str(gone), str(stray), str(archive / "a.json"), "copy")])
    j.close()
    run_once(make_config(root))
    assert not stray.exists()
    assert not (archive / "a.json").exists()
    assert journal(root).claims() == []


def test_staged_copy_of_a_claim_moved_into_the_archive_is_published(root, caplog):
    # The crash came after the original's move into the archive (the last rename) reached the disk
    # but before a routed copy's rename did: the flushed copy is published, not thrown away.
    caplog.set_level(logging.INFO, logger="json_workflow")
    claim = str(make_config(root).claim_area / "RANK/00000000000000000001_a.json")
    archive, route = root / "JSON_STORE/RANK", root / RANK_ROUTE
    archive.mkdir(parents=True)
    route.mkdir(parents=True)
    (archive / "a.json").write_bytes(b"job")
    temp = route / ".a.json.1-1.jwtmp"
    temp.write_bytes(b"job")
    j = journal(root)
    j.record_plan([(claim, str(temp), str(route / "a.json"), "copy"), (claim, claim, str(archive / "a.json"), "move")])
    j.mark_staged([claim])
    j.close()
    summary = run_once(make_config(root))
    assert (route / "a.json").read_bytes() == b"job"
    assert (archive / "a.json").read_bytes() == b"job"
    assert not temp.exists()
    assert (summary.archived, summary.routed) == (1, 1)  # counted as its batch would have: routed too
    assert journal(root).claims() == []
    # Named as everywhere (CLIENT/name), though its claim is gone: a takeover's log says the same
    assert "[RECOVERY] Finished RANK/a.json after a crash: 1 of 2 copies published now" in caplog.text


def test_planned_move_never_removes_the_claimed_original(root):
    data = job("RANK", "PRODUCTION", 1)
    claimed = claim_file(root, "RANK", "a.json", data)
    archive = root / "JSON_STORE/RANK"
    archive.mkdir(parents=True)
    j = journal(root)
    j.record_plan([(str(claimed), str(claimed), str(archive / "a.json"), "move")])
    j.close()
    run_once(make_config(root))
    assert (archive / "a.json").read_bytes() == data
    assert (root / RANK_ROUTE / "a.json").read_bytes() == data
    assert leftovers(root) == []


def test_archive_copy_across_a_mount_interrupted_by_a_crash_is_redone(root, bind_archive):
    # A staged move into an archive that rename(2) cannot reach (another mount of the same disk):
    # the crash left a half-written copy under the claim's fixed temporary name.
    (bind_archive / "RANK").mkdir()
    data = job("RANK", "PRODUCTION", 1)
    claimed = claim_file(root, "RANK", "a.json", data)
    (bind_archive / "RANK" / f".{claimed.name}.jwtmp").write_bytes(data[:10])
    j = journal(root)
    j.record_plan([(str(claimed), str(claimed), str(bind_archive / "RANK/a.json"), "move")])
    j.mark_staged([str(claimed)])
    j.close()
    summary = run_once(make_config(root, paths={"archive": str(bind_archive)}))
    assert summary.archived == 1
    assert (bind_archive / "RANK/a.json").read_bytes() == data
    assert os.listdir(bind_archive / "RANK") == ["a.json"]
    assert leftovers(root) == []


def killed_after(command: list[str], archive: Path, archived: int) -> int:
    """Start `command`, kill -9 it once `archive` holds `archived` files, and return its exit status."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: process.poll() is not None or sum(len(names) for _, _, names in os.walk(archive)) >= archived,
            timeout=60,
            what=f"{archived} files archived",
        )
    finally:
        process.send_signal(signal.SIGKILL)
    return process.wait()


@pytest.mark.slow  # 10 s: 1,900 files, six runs killed, one to the end
@pytest.mark.parametrize("processes", [1, 2])
def test_kill_9_at_any_moment_loses_nothing_and_delivers_nothing_twice(root, tmp_path, processes):
    rng = random.Random(7)
    expected_good, expected_bad, rank_names = {}, {}, set()
    for client, name, data, valid in backlog(1900, seed=3, bad_every=50):
        drop(root, client, name, data)
        (expected_good if valid else expected_bad)[name] = (client, data)
        if valid and client == "RANK":
            rank_names.add(name)
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    # Two processes: the run's, killed, takes its worker with it (and the next run finishes both areas).
    settings = tmp_path / "once.toml"
    settings.write_text(f'root = "{root}"\nprocesses = {processes}\n')
    command = [sys.executable, "-m", "json_workflow", "run", "--once", "--config", str(settings)]
    archived = 0
    for kill in range(6):
        # Each run is killed once it has archived a (seeded) random 100-250 files more: in the middle of its
        # work, wherever that is in a batch, with 400 files or more still to go, so it cannot have finished.
        archived += rng.randint(100, 250)
        status = killed_after(command, root / "JSON_STORE", archived)
        assert status == -signal.SIGKILL, f"run {kill + 1} ended by itself (status {status}) before it was killed"
    final = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    deadline = time.monotonic() + 10
    while set(consumer.seen) != rank_names and time.monotonic() < deadline:
        time.sleep(0.01)
    consumer.stop.set()
    consumer.join()
    assert {n for n, count in consumer.seen.items() if count > 1} == set()
    assert set(consumer.seen) == rank_names
    for name, (client, data) in expected_good.items():
        assert (root / "JSON_STORE" / client / name).read_bytes() == data
    for name, (_client, data) in expected_bad.items():
        (failed,) = failed_entries(root, name)
        assert failed.read_bytes() == data
    assert not any((root / "JSON").rglob("*.json"))
    assert leftovers(root) == []
    # The statistics are as exact as the folders: a file finished by recovery has its job's facts and routes too.
    config = build({}, "t", root=root)  # the runs' own store (SQLite: the command named no other)
    assert (
        query(config, "SELECT name FROM files WHERE outcome = 'archived' AND (job IS NULL OR category IS NULL)") == []
    )
    assert query(config, "SELECT name FROM files WHERE outcome = 'failed' AND (stage IS NULL OR reason IS NULL)") == []
    [(routed,)] = query(
        config, "SELECT COUNT(DISTINCT f.name) FROM files f JOIN routed r ON r.file = f.id WHERE r.rule = 'Monday Rank'"
    )
    assert routed == len(rank_names)


@pytest.mark.parametrize("same", [True, False])
def test_a_claim_whose_name_a_newer_file_took_meanwhile_is_judged_not_delivered_again(root, same):
    """A crash left a file claimed; its writer wrote it again under its name meanwhile. Delivered now it
    would come before the newer version: the same bytes are dropped, other bytes set aside (superseded)."""
    older = job("RANK", "X", 1)
    newer = older if same else job("RANK", "X", 2)
    claim = claim_file(root, "RANK", "v.json", older)
    origin = drop(root, "RANK", "v.json", newer)
    os.utime(origin, (time.time() - 5, time.time() - 5))  # whole: written a while ago
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    try:
        summary = run_once(make_config(root))
        wait_for(lambda: consumer.seen, what="the newer version delivered")
    finally:
        consumer.stop.set()
        consumer.join()
    assert consumer.seen == {"v.json": 1}  # the job once, as the consumer sees it
    assert (root / "JSON_STORE/RANK/v.json").read_bytes() == newer
    assert not claim.exists() and not origin.exists()
    if same:
        assert (summary.archived, summary.superseded, summary.failed) == (1, 1, 0)
        assert failed_entries(root, "v.json") == []
    else:
        assert (summary.archived, summary.superseded, summary.failed) == (1, 0, 1)
        (aside,) = failed_entries(root, "v.json")
        assert aside.read_bytes() == older
