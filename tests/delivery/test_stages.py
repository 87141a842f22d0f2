"""delivery/stages.py (and durable.py beneath it) on real files: the archive, temporaries, modes.

Components:
1. the archive: the claimed original itself moved in with its timestamp (`_movable`: same filesystem,
   the configured mode, one link), an exact copy on another filesystem or another mount of the same one,
   a claim swapped for a symlink never chmodded nor archived (`durable.set_mode`, `_move`)
2. temporaries: none survives good, bad and pending runs; a long name's temporary still fits its folder
3. modes: created files and folders get the configured modes (both flush modes); an existing
   destination folder's mode is left alone
"""

from __future__ import annotations

import logging
import os
import stat

import pytest

from conftest import (
    CELTRA,
    FIXED_STAMP,
    assert_clean,
    drop,
    leftovers,
    make_config,
    run,
    trouble_records,
)
from json_workflow import durable
from json_workflow.delivery import stages
from json_workflow.delivery.flush import Barrier
from json_workflow.delivery.model import Copy, Kind
from json_workflow.samples import job

# --- 1. the archive -------------------------------------------------------------------------------


def test_archive_gets_the_original_itself_moved_with_its_timestamp(config, root):
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    original = root / "JSON/RANK/a.json"
    os.chmod(original, 0o600)
    os.utime(original, (1_600_000_000, 1_600_000_000))
    inode = original.stat().st_ino
    summary = run(config)
    assert (summary.archived, summary.pending) == (1, 0)
    archived, routed = root / "JSON_STORE/RANK/a.json", root / "SYNC/MAKE/Monday Rank/a.json"
    assert archived.stat().st_ino == inode  # moved, not copied
    assert archived.stat().st_mtime == 1_600_000_000  # when TWIST wrote it
    assert stat.S_IMODE(archived.stat().st_mode) == 0o664
    assert routed.stat().st_ino != inode and routed.read_bytes() == archived.read_bytes()
    assert_clean(root)


def test_archive_on_another_filesystem_gets_an_exact_copy(root, tiny_tmpfs):
    (tiny_tmpfs / "RANK").mkdir()
    config = make_config(root, paths={"archive": str(tiny_tmpfs)})
    data = job("RANK", "X", 1)
    drop(root, "RANK", "a.json", data)
    summary = run(config)
    assert (summary.archived, summary.pending) == (1, 0)
    archived = tiny_tmpfs / "RANK/a.json"
    assert archived.read_bytes() == data
    assert stat.S_IMODE(archived.stat().st_mode) == 0o664
    assert os.listdir(tiny_tmpfs / "RANK") == ["a.json"]  # no temporary left
    assert not (root / "JSON/RANK/a.json").exists()
    assert_clean(root)


def test_archive_on_another_mount_of_the_same_filesystem_gets_a_copy(root, bind_archive):
    # Same st_dev, but rename(2) refuses to cross mount points (EXDEV): a Docker volume, a bind mount.
    (bind_archive / "RANK").mkdir()
    config = make_config(root, paths={"archive": str(bind_archive)})
    data = job("RANK", "X", 1)
    drop(root, "RANK", "a.json", data)
    drop(root, "RANK", "b.json", data)
    summary = run(config)
    assert (summary.archived, summary.pending) == (2, 0)
    for name in ("a.json", "b.json"):
        archived = bind_archive / "RANK" / name
        assert archived.read_bytes() == data
        assert stat.S_IMODE(archived.stat().st_mode) == 0o664
        assert (root / "SYNC/MAKE/Monday Rank" / name).read_bytes() == data
    assert sorted(os.listdir(bind_archive / "RANK")) == ["a.json", "b.json"]  # no temporary left
    assert_clean(root)


def test_a_claim_swapped_for_a_symlink_is_never_chmodded_nor_archived(root, outside):
    secret = outside / "secret"
    secret.write_bytes(b"s")
    os.chmod(secret, 0o600)
    claim = root / "claim.json"
    claim.symlink_to(secret)  # what an attacker could put in the claim area after the file was read
    with pytest.raises(OSError):
        durable.set_mode(str(claim), 0o664)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    archive = root / "archive"
    archive.mkdir()
    with pytest.raises(OSError):
        stages._move(Copy(str(claim), str(archive / "a.json"), Kind.MOVE), Barrier())
    assert os.listdir(archive) == []


def test_the_original_is_archived_only_on_the_same_filesystem_with_the_configured_mode():
    def info(mode, device, links=1):
        return os.stat_result((stat.S_IFREG | mode, 0, device, links, 0, 0, 10, 0, 0, 0))

    assert stages._movable(info(0o664, 7), 7, 0o664)
    assert not stages._movable(info(0o664, 7), 8, 0o664)  # another filesystem
    assert not stages._movable(info(0o600, 7), 7, 0o664)  # its mode could not be set (not its owner)
    assert not stages._movable(info(0o664, 7, links=2), 7, 0o664)  # another hard link shares it
    assert not stages._movable(None, 7, 0o664)


# --- 2. temporaries -------------------------------------------------------------------------------


def test_no_temporary_survives_good_bad_and_pending_runs(config, root):
    (root / "CLIENT-STORES/LOREAL").mkdir(parents=True)
    (root / "CLIENT-STORES/LOREAL/IN").write_bytes(b"blocker")
    for n in range(20):
        drop(root, "RANK", f"g{n}.json", job("RANK", "CELTRA", n))
        drop(root, "LOREAL", f"p{n}.json", job("LOREAL", "X", n))
        drop(root, "BISSELL", f"b{n}.json", b"{" * (n + 1))
    (root / "JSON/RANK/.editor.json").write_bytes(b"mine")
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (20, 20, 20)
    assert leftovers(root, {".editor.json"}) == []
    assert not any(n.endswith(".jwtmp") for n in os.listdir(root / "JSON_STORE/LOREAL"))


def test_long_file_name_does_not_break_its_clients_archive(config, root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    drop(root, "RANK", "a" * 240 + ".json", job("RANK", "X", 1))
    for n in range(5):
        drop(root, "RANK", f"ok{n}.json", job("RANK", "X", n))
    summary = run(config)
    assert summary.pending == 0
    assert trouble_records(caplog) == []


# --- 3. modes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_mode, dir_mode", [(0o640, 0o750), (0o664, 0o775), (0o777, 0o777)])
@pytest.mark.parametrize("flush", ["filesystem", "file"])
def test_created_files_and_folders_get_configured_modes(file_mode, dir_mode, flush, root):
    config = make_config(root, flush=flush, permissions={"file_mode": file_mode, "dir_mode": dir_mode})
    drop(root, "RANK", "g.json", job("RANK", "CELTRA", 1))
    drop(root, "RANK", "bad.json", b"{")
    summary = run(config)
    assert (summary.archived, summary.failed) == (1, 1)
    created_files = [
        root / "JSON_STORE/RANK/g.json",
        root / "SYNC/MAKE/Monday Rank/g.json",
        root / CELTRA / "g.json",
        root / "JSON_FAILED/RANK" / f"{FIXED_STAMP}_bad.json.reason.txt",
    ]
    created_dirs = [
        root / "JSON_STORE",
        root / "JSON_STORE/RANK",
        root / "SYNC",
        root / "SYNC/MAKE",
        root / "SYNC/MAKE/Monday Rank",
        root / CELTRA,
        root / "JSON_FAILED",
        root / "JSON_FAILED/RANK",
    ]
    for f in created_files:
        assert stat.S_IMODE(f.stat().st_mode) == file_mode, f
    for d in created_dirs:
        assert stat.S_IMODE(d.stat().st_mode) == dir_mode, d


def test_existing_destination_folder_mode_is_left_alone(config, root):
    (root / "JSON_STORE/RANK").mkdir(parents=True)
    os.chmod(root / "JSON_STORE/RANK", 0o700)
    drop(root, "RANK", "g.json", job("RANK", "X", 1))
    run(config)
    assert stat.S_IMODE((root / "JSON_STORE/RANK").stat().st_mode) == 0o700
