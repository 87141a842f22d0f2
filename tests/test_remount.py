"""The ground moving under the service: a remounted or replaced hot folder, a removed or symlinked claim
area, a damaged journal. Intake goes on or stops with a clear error; nothing escapes the data root."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import Service, cli, drop_atomically, leftovers, mounted_tmpfs, snapshot, wait_for
from json_workflow.samples import job


def quick_events_only(path, root, watch="inotify"):
    """A configuration whose periodic scan is too far off to help: only events take files in time."""
    path.write_text(
        f'root = "{root}"\nwatch = "{watch}"\nstable_seconds = 1\nscan_interval = 600\n'
        "retry_max_seconds = 1\nshutdown_timeout = 10\n"
    )
    return path


@pytest.mark.parametrize("watch", ["inotify", "polling"])
def test_a_removed_claim_area_is_made_again(root, tmp_path, watch):
    service = Service(root, quick_events_only(tmp_path / "c.toml", root, watch)).start()
    try:
        drop_atomically(root, "RANK", "first.json", job("RANK", "X", 1))
        wait_for(lambda: (root / "JSON_STORE/RANK/first.json").exists(), what="the first file")
        shutil.rmtree(root / "JSON/.processing")
        drop_atomically(root, "RANK", "second.json", job("RANK", "X", 2))
        wait_for(lambda: (root / "JSON_STORE/RANK/second.json").exists(), what="a file after the removal")
        assert "claim area" in service.text() and "making it again" in service.text()
    finally:
        assert service.stop() == 0
    assert leftovers(root) == []


@pytest.mark.parametrize("watch", ["inotify", "polling"])
def test_a_replaced_hot_folder_is_watched_again(root, tmp_path, watch):
    service = Service(root, quick_events_only(tmp_path / "c.toml", root, watch)).start()
    try:
        (root / "JSON").rename(root / "JSON.old")
        (root / "JSON").mkdir()
        wait_for(lambda: "was remounted or replaced: watching it again" in service.text(), what="the log to say so")
        wait_for(lambda: "Periodic scan #1 complete" in service.text(), what="the scan after the re-watch")
        drop_atomically(root, "RANK", "after.json", job("RANK", "X", 1))
        wait_for(
            lambda: (root / "JSON_STORE/RANK/after.json").exists(),
            timeout=10,
            what="a file in the new hot folder, long before the periodic scan",
        )
    finally:
        assert service.stop() == 0


@pytest.fixture
def share(tmp_path):
    """The hot folder on a filesystem of its own (a tmpfs standing in for a NAS share); skip if not root."""
    hot = tmp_path / "root" / "JSON"
    yield from mounted_tmpfs(hot, "16m")


def drop_beside(folder, name, data):
    """Write under a hidden name in the folder itself, then rename (renames cannot cross a mount)."""
    folder.mkdir(exist_ok=True)
    (folder / f".{name}").write_bytes(data)
    os.rename(folder / f".{name}", folder / name)


@pytest.mark.root
def test_a_remounted_hot_folder_is_watched_again(share, tmp_path):
    root = share.parent
    service = Service(root, quick_events_only(tmp_path / "c.toml", root)).start()
    try:
        drop_beside(share / "RANK", "before.json", job("RANK", "X", 1))
        wait_for(lambda: (root / "JSON_STORE/RANK/before.json").exists(), what="a file before the remount")
        subprocess.run(["umount", str(share)], check=True, timeout=10)  # the NAS goes away ...
        wait_for(
            lambda: "lost its inotify watch" in service.text() or "was remounted" in service.text(),
            what="the log to say the watch was lost",
        )
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(share)], check=True, timeout=10)
        wait_for(
            lambda: "was remounted or replaced: watching it again" in service.text(),
            what="the log to say the share is watched again",
        )  # ... and is back
        # Each re-watch scans once; wait for those scans, so that only an event can take the next file.
        wait_for(
            lambda: service.text().count("Periodic scan #") >= service.text().count("watching it again"),
            what="the scans after the re-watch",
        )
        drop_beside(share / "RANK", "after.json", job("RANK", "X", 2))
        wait_for(
            lambda: (root / "JSON_STORE/RANK/after.json").exists(),
            timeout=10,
            what="a file after the remount, taken by its event",
        )
    finally:
        assert service.stop() == 0


@pytest.mark.parametrize("link", [".processing", ".processing/RANK"])
@pytest.mark.parametrize("mode", ["--once", "service"])
def test_a_symlinked_claim_area_is_refused_and_never_followed(root, outside, link, mode):
    (root / "JSON/RANK").mkdir()
    (root / "JSON/RANK/a.json").write_bytes(job("RANK", "X", 1))
    (root / "JSON" / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, root / "JSON" / link)
    before = snapshot(outside)
    done = cli("run", *(["--once"] if mode == "--once" else []), "--root", str(root), timeout=30)
    assert done.returncode == 1, done.stderr
    assert "is a symlink or not a folder" in done.stderr and ".processing" in done.stderr
    assert snapshot(outside) == before
    assert (root / "JSON/RANK/a.json").exists()


DAMAGED = b"this was a journal until the disk went bad" * 100


@pytest.mark.parametrize("command", [["run", "--once"], ["run"], ["stats"], ["report"]])
def test_a_damaged_journal_is_named_with_what_to_do(root, command):
    (root / "JSON_PARSER_STATE").mkdir()
    (root / "JSON_PARSER_STATE/journal.sqlite3").write_bytes(DAMAGED)
    done = cli(*command, "--root", str(root), timeout=30)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert str(root / "JSON_PARSER_STATE/journal.sqlite3") in done.stderr
    assert "move the file aside" in done.stderr
    assert (root / "JSON_PARSER_STATE/journal.sqlite3").read_bytes() == DAMAGED  # never overwritten
