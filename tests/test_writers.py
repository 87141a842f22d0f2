"""Files still being written are never taken half-written, by `run --once` or the service."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from conftest import RANK_ROUTE, Service, _mounted, failed_entries, leftovers, read_reason, wait_for, write_config
from json_workflow.config import build
from json_workflow.run import run_once
from json_workflow.samples import job


def test_run_once_never_takes_a_file_open_for_writing(root):
    data = job("RANK", "X", 1)
    (root / "JSON/RANK").mkdir()
    path = root / "JSON/RANK/open.json"
    config = build({}, "t", root=root)
    with open(path, "wb") as writer:
        writer.write(data[:40])
        writer.flush()
        before = os.stat(path)
        summary = run_once(config)
        assert (summary.pending, summary.failed, summary.archived) == (1, 0, 0)
        after = os.stat(path)  # back in the hot folder: the same file, untouched
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
        writer.write(data[40:])
    assert failed_entries(root, "open.json") == []
    assert run_once(config).archived == 1
    assert (root / "JSON_STORE/RANK/open.json").read_bytes() == data
    assert leftovers(root) == []


def test_run_once_never_takes_a_complete_file_still_open_for_writing(root):
    # Whole and valid, but its writer may still rewrite it: what is archived must be what was routed.
    data = job("RANK", "X", 1)
    (root / "JSON/RANK").mkdir()
    with open(root / "JSON/RANK/whole.json", "wb") as writer:
        writer.write(data)
        writer.flush()
        assert run_once(build({}, "t", root=root)).pending == 1
    assert not (root / RANK_ROUTE / "whole.json").exists()


@pytest.fixture
def share(tmp_path):
    """A hot folder seen through bindfs (FUSE): writes made behind it come from a writer no lease sees."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed")
    behind, root = tmp_path / "behind", tmp_path / "root"
    (behind / "RANK").mkdir(parents=True)
    (root / "JSON").mkdir(parents=True)
    yield from ((behind, root) for _ in _mounted(["bindfs", str(behind)], root / "JSON"))


@pytest.mark.root
def test_on_a_share_an_unparsable_file_waits_while_it_is_young_then_fails(share):
    behind, root = share
    half = job("RANK", "X", 1)[:50]
    (behind / "RANK/remote.json").write_bytes(half)  # another host, half way through writing
    config = build({"stable_seconds": 30}, "t", root=root)
    summary = run_once(config)
    assert (summary.pending, summary.failed) == (1, 0)
    assert (behind / "RANK/remote.json").read_bytes() == half
    old = time.time() - 60
    os.utime(behind / "RANK/remote.json", (old, old))  # it stopped changing long ago: it is bad, not busy
    summary = run_once(config)
    assert summary.failed == 1
    (failed,) = failed_entries(root, "remote.json")
    assert failed.read_bytes() == half and read_reason(failed)["stage"] == "parse"


def test_locally_a_closed_unparsable_file_fails_at_once(root):
    (root / "JSON/RANK").mkdir()
    (root / "JSON/RANK/bad.json").write_bytes(b'{"half": ')
    assert run_once(build({"stable_seconds": 30}, "t", root=root)).failed == 1


def rewrite_in_place(path: Path, versions: list[bytes], stop: threading.Event) -> None:
    """Rewrite one file in place, version after version (open with O_TRUNC, write in two parts, close)."""
    for data in versions:
        if stop.is_set():
            return
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.005)  # half written, for long enough to be read so by anyone who does not wait
            f.write(data[len(data) // 2 :])
        time.sleep(0.0005)


@pytest.mark.parametrize("watch", ["inotify"])
def test_in_place_rewrites_never_fail_as_half_written_and_the_last_version_is_delivered(root, tmp_path, watch):
    service = Service(root, write_config(tmp_path / "config.toml", root, watch)).start()
    (root / "JSON/RANK").mkdir()
    versions = [job("RANK", "X", n, size=3000) for n in range(400)]
    stop = threading.Event()
    writer = threading.Thread(target=rewrite_in_place, args=(root / "JSON/RANK/v.json", versions, stop))
    try:
        writer.start()
        writer.join(timeout=60)
        last = versions[-1]
        wait_for(
            lambda: (
                not (root / "JSON/RANK/v.json").exists()
                and (root / "JSON_STORE/RANK/v.json").exists()
                and (root / "JSON_STORE/RANK/v.json").read_bytes() == last
                and (root / RANK_ROUTE / "v.json").read_bytes() == last
            ),
            timeout=30,
            what="the last version in the archive and the sync folder",
        )
    finally:
        stop.set()
        assert service.stop() == 0
    for failed in failed_entries(root, "v.json"):
        # A version can only be set aside whole, because a newer one replaced it while it waited.
        assert read_reason(failed)["stage"] == "deliver" and "superseded" in read_reason(failed)["reason"]
        assert failed.read_bytes() in versions
    assert "invalid JSON" not in service.text()
    assert leftovers(root) == []


def rewrite_several_times(folder: Path, jobs: dict[str, bytes], times: int, chunks: int = 6) -> None:
    """Write each job file as some exporters do: the whole file `times` over, each in `chunks` writes."""
    pauses = random.Random(5)
    for name, data in jobs.items():
        step = len(data) // chunks + 1
        for _ in range(times):
            with open(folder / name, "wb") as f:
                for start in range(0, len(data), step):
                    f.write(data[start : start + step])
                    f.flush()
                    time.sleep(0.002)
            if pauses.random() < 0.5:
                time.sleep(pauses.uniform(0, 0.003))


def test_identical_rewrites_while_a_destination_is_in_trouble_fail_nothing(root, tmp_path):
    """The files wait for their destination; their writer writes each several times over, the same bytes:
    each older version that comes back finds a newer one (maybe half written) in its place, and is no failure."""
    blocked = root / RANK_ROUTE
    blocked.parent.mkdir(parents=True)
    blocked.write_bytes(b"")  # the destination is in trouble: every file waits, and comes back
    service = Service(root, write_config(tmp_path / "config.toml", root)).start()
    (root / "JSON/RANK").mkdir()
    jobs = {f"rw{n}.json": job("RANK", "PRODUCTION", n, size=6000) for n in range(60)}
    try:
        rewrite_several_times(root / "JSON/RANK", jobs, times=8)
        time.sleep(2)  # the last versions settle (nothing to poll: waiting is the point)
        blocked.unlink()  # fixed: the files that waited go out
        wait_for(
            lambda: (
                all((root / "JSON_STORE/RANK" / name).is_file() for name in jobs)
                and not list((root / "JSON/RANK").iterdir())
            ),
            timeout=60,
            what="every job archived",
        )
    finally:
        assert service.stop() == 0
    assert "was superseded" not in service.text()
    assert not (root / "JSON_FAILED").exists(), sorted(os.listdir(root / "JSON_FAILED/RANK"))
    for name, data in jobs.items():
        assert (root / "JSON_STORE/RANK" / name).read_bytes() == data
        assert (root / RANK_ROUTE / name).read_bytes() == data
    assert leftovers(root) == []
