"""delivery/folders.py (Folders) on real files: destinations in trouble, and which folders are made.

Components:
- trouble: a destination that is a regular file, a missing mount, a broken archive, a broken failed
  folder, a full disk: the files that need it stay pending (none of their copies published, not even
  the archive's), other files go through, the trouble is logged once per folder, the next run tries again
- Folders._top: a missing mount outside the root is never created; an archive outside the root gets
  its client folders
"""

from __future__ import annotations

import copy
import logging
import os

from conftest import (
    assert_clean,
    drop,
    failed_entries,
    make_config,
    places_of,
    run,
    trouble_records,
)
from json_workflow.routing.rules import SEED_ROUTES
from json_workflow.samples import job

# --- destinations in trouble ----------------------------------------------------------------------


def test_destination_that_is_a_regular_file_keeps_files_pending(config, root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    (root / "SYNC/MAKE").mkdir(parents=True)
    blocker = root / "SYNC/MAKE/Monday Rank"
    blocker.write_bytes(b"not a folder")
    rank = {f"r{n}.json": job("RANK", "PRODUCTION", n) for n in range(4)}
    for name, data in rank.items():
        drop(root, "RANK", name, data)
    loreal = job("LOREAL", "CAMPAIGN", 1)
    drop(root, "LOREAL", "l.json", loreal)
    drop(root, "BISSELL", "bad.json", b"{")
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (1, 1, 4)
    for name, data in rank.items():
        assert (root / "JSON/RANK" / name).read_bytes() == data
        assert failed_entries(root, name) == []
        assert places_of(root, name) == set()  # not even the archive copy is published
    assert (root / "CLIENT-STORES/LOREAL/IN/l.json").read_bytes() == loreal
    assert len(failed_entries(root, "bad.json")) == 1
    records = trouble_records(caplog)
    assert len(records) == 1
    assert "Monday Rank" in records[0].getMessage() and "errno" in records[0].getMessage()
    assert records[0].levelno == logging.ERROR
    assert_clean(root)

    blocker.unlink()
    caplog.clear()
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (4, 0, 0)
    for name, data in rank.items():
        assert (root / "SYNC/MAKE/Monday Rank" / name).read_bytes() == data
        assert (root / "JSON_STORE/RANK" / name).read_bytes() == data
        assert not (root / "JSON/RANK" / name).exists()
    assert trouble_records(caplog) == []
    assert_clean(root)


def test_missing_mount_outside_root_is_pending_and_never_created(root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    mount = tmp_path / "mnt" / "share" / "IN"
    routes = copy.deepcopy(SEED_ROUTES)
    routes[0]["destination"] = str(mount)
    config = make_config(root, routes=routes)
    data = job("RANK", "X", 1)
    drop(root, "RANK", "a.json", data)
    drop(root, "RANK", "b.json", job("RANK", "X", 2))
    drop(root, "LOREAL", "l.json", job("LOREAL", "X", 3))
    summary = run(config)
    assert (summary.archived, summary.pending) == (1, 2)
    assert not (tmp_path / "mnt").exists()
    assert (root / "JSON/RANK/a.json").read_bytes() == data
    assert len(trouble_records(caplog)) == 1
    assert str(mount) in trouble_records(caplog)[0].getMessage()
    assert_clean(root)

    mount.mkdir(parents=True)
    summary = run(config)
    assert (summary.archived, summary.pending) == (2, 0)
    assert (mount / "a.json").read_bytes() == data
    assert (root / "JSON_STORE/RANK/a.json").read_bytes() == data


def test_broken_archive_keeps_good_files_pending_and_still_fails_bad_ones(config, root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    (root / "JSON_STORE").write_bytes(b"a file where the archive should be")
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    drop(root, "LOREAL", "b.json", job("LOREAL", "X", 2))
    drop(root, "RANK", "bad.json", b"{")
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (0, 1, 2)
    assert (root / "JSON/RANK/a.json").exists() and (root / "JSON/LOREAL/b.json").exists()
    assert places_of(root, "a.json") == set()
    assert places_of(root, "b.json") == set()
    assert len(failed_entries(root, "bad.json")) == 1
    assert len(trouble_records(caplog)) == 2  # JSON_STORE/RANK and JSON_STORE/LOREAL, once each
    assert_clean(root)


def test_broken_failed_folder_keeps_bad_files_pending(config, root):
    (root / "JSON_FAILED").write_bytes(b"oops")
    drop(root, "RANK", "bad.json", b"{")
    drop(root, "RANK", "good.json", job("RANK", "X", 1))
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (1, 0, 1)
    assert (root / "JSON/RANK/bad.json").read_bytes() == b"{"
    assert (root / "JSON_STORE/RANK/good.json").exists()
    assert_clean(root)


def test_disk_full_destination_keeps_file_pending(root, tiny_tmpfs, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    routes = copy.deepcopy(SEED_ROUTES)
    routes[0]["destination"] = str(tiny_tmpfs)
    config = make_config(root, routes=routes)
    big = job("RANK", "X", 1, size=200_000)
    drop(root, "RANK", "big.json", big)
    drop(root, "LOREAL", "l.json", job("LOREAL", "X", 1))
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (1, 0, 1)
    assert (root / "JSON/RANK/big.json").read_bytes() == big
    assert os.listdir(tiny_tmpfs) == []  # the partial temporary was removed
    (record,) = trouble_records(caplog)
    assert "errno 28" in record.getMessage()
    assert_clean(root)


# --- folders outside the root ---------------------------------------------------------------------


def test_archive_outside_root_gets_client_folders(root, outside):
    archive = outside / "archive"
    archive.mkdir()
    config = make_config(root, paths={"archive": str(archive)})
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    summary = run(config)
    assert (summary.archived, summary.pending) == (1, 0)
    assert (archive / "RANK" / "a.json").exists()
