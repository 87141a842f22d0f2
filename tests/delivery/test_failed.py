"""delivery/failed.py (with Folders.failed_name) on real files: where a rejected file goes, and under which name.

Components:
- failed names: {stamp}_{name}, then {stamp}-2_{name}, ...: a failed file never overwrites one of the
  same name nor a name already there; without a fixed clock, a real timestamp prefix
- a folder in the hot folder named like a job file does not trouble the failed folder
- link_or_copy: a failed folder on another filesystem gets exact copies (a symlink as a symlink, the
  configured mode)
"""

from __future__ import annotations

import logging
import os
import stat

from conftest import (
    FAILED_NAME,
    FIXED_STAMP,
    drop,
    failed_entries,
    make_config,
    read_reason,
    run,
    trouble_records,
)
from json_workflow.run import run_once

# --- failed names ---------------------------------------------------------------------------------


def test_failed_file_never_overwrites_one_of_the_same_name(config, root):
    first, second, third = b"{one", b"{two", b"{three"
    drop(root, "RANK", "x.json", first)
    run(config)
    drop(root, "RANK", "x.json", second)
    run(config)
    drop(root, "RANK", "x.json", third)
    run(config)
    folder = root / "JSON_FAILED/RANK"
    assert (folder / f"{FIXED_STAMP}_x.json").read_bytes() == first
    assert (folder / f"{FIXED_STAMP}-2_x.json").read_bytes() == second
    assert (folder / f"{FIXED_STAMP}-3_x.json").read_bytes() == third
    for n in ("", "-2", "-3"):
        assert (folder / f"{FIXED_STAMP}{n}_x.json.reason.txt").exists()


def test_failed_file_does_not_replace_a_precreated_name(config, root):
    folder = root / "JSON_FAILED/RANK"
    folder.mkdir(parents=True)
    (folder / f"{FIXED_STAMP}_x.json").write_bytes(b"already here")
    drop(root, "RANK", "x.json", b"{bad")
    run(config)
    assert (folder / f"{FIXED_STAMP}_x.json").read_bytes() == b"already here"
    assert (folder / f"{FIXED_STAMP}-2_x.json").read_bytes() == b"{bad"
    assert "invalid JSON" in read_reason(folder / f"{FIXED_STAMP}-2_x.json")["reason"]


def test_failed_name_without_fixed_clock_has_a_timestamp_prefix(config, root):
    drop(root, "RANK", "x.json", b"{")
    run_once(config)
    (failed,) = failed_entries(root, "x.json")
    assert FAILED_NAME.match(failed.name).group(2) is None


def test_folder_named_like_a_job_does_not_break_the_failed_folder(config, root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    (root / "JSON/RANK/folder.json").mkdir(parents=True)
    drop(root, "RANK", "bad.json", b"{")
    run(config)
    assert trouble_records(caplog) == []
    assert len(failed_entries(root, "bad.json")) == 1


# --- another filesystem ---------------------------------------------------------------------------


def test_failed_folder_on_another_filesystem_gets_exact_copies(root, tiny_tmpfs, outside):
    # The client folders are made by hand: see test_archive_outside_root_gets_client_folders (a bug).
    (tiny_tmpfs / "RANK").mkdir()
    config = make_config(root, paths={"failed": str(tiny_tmpfs)})
    target = outside / "t.json"
    target.write_bytes(b"{}")
    os.symlink(target, root / "JSON" / "link.json")
    drop(root, "RANK", "bad.json", b"{bad")
    (tiny_tmpfs / "_unknown").mkdir()
    summary = run(config)
    assert (summary.failed, summary.pending) == (2, 0)
    copy_ = tiny_tmpfs / "RANK" / f"{FIXED_STAMP}_bad.json"
    assert copy_.read_bytes() == b"{bad"
    assert stat.S_IMODE(copy_.stat().st_mode) == 0o664
    link = tiny_tmpfs / "_unknown" / f"{FIXED_STAMP}_link.json"
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert not (root / "JSON/RANK/bad.json").exists()
    assert target.read_bytes() == b"{}"
