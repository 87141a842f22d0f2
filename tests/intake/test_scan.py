"""Intake: which files in the hot folder are job files, and that everything else is left untouched."""

from __future__ import annotations

import os

import pytest

from conftest import drop, snapshot
from json_workflow.intake.scan import is_job_name, scan
from json_workflow.run import run_once
from json_workflow.samples import job

IGNORED = [
    ".hidden.json",
    ".x.json.swp",
    "~lock.json",
    "~$report.json",
    "x.tmp",
    "x.json.tmp",
    "x.part",
    "x.json.part",
    "x.swp",
    "x.crdownload",
    "x.json.crdownload",
    "notes.txt",
    "x.xml",
    "README",
    "x.jsonl",
    "x.json.bak",
    "json",
]
TAKEN = ["a.json", "B.JSON", "c.Json", "d.e.json", "not~first.json"]


@pytest.mark.parametrize("name", IGNORED)
def test_is_job_name_rejects_temporaries_hidden_and_other_extensions(name):
    assert not is_job_name(name)


@pytest.mark.parametrize("name", TAKEN)
def test_is_job_name_takes_json_in_any_case(name):
    assert is_job_name(name)


def test_scan_finds_client_and_top_level_job_files_only(root):
    hot = root / "JSON"
    for name in IGNORED:
        drop(root, "RANK", name, b"x")
        drop(root, None, name, b"x")
    drop(root, "RANK", "a.json", b"x")
    drop(root, "LOREAL", "B.JSON", b"x")
    drop(root, None, "top.json", b"x")
    drop(root, ".hiddenclient", "h.json", b"x")
    drop(root, "~tmpclient", "t.json", b"x")
    drop(root, "RANK/sub", "nested.json", b"x")
    found = sorted(((c.folder or ""), c.name, c.symlink) for c in scan(hot))
    assert found == [("", "top.json", False), ("LOREAL", "B.JSON", False), ("RANK", "a.json", False)]


def test_scan_reports_display_names(root):
    drop(root, "RANK", "a.json", b"x")
    drop(root, None, "b.json", b"x")
    assert sorted(c.display for c in scan(root / "JSON")) == ["RANK/a.json", "b.json"]


def test_scan_marks_symlinks_and_never_follows_them(root, outside):
    target = outside / "target.json"
    target.write_bytes(b"{}")
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.json").write_bytes(b"{}")
    (root / "JSON" / "RANK").mkdir()
    os.symlink(target, root / "JSON" / "RANK" / "link.json")
    os.symlink(target, root / "JSON" / "toplink.json")
    os.symlink(outside / "dir", root / "JSON" / "LINKEDCLIENT")
    found = sorted(((c.folder or ""), c.name, c.symlink) for c in scan(root / "JSON"))
    assert found == [("", "LINKEDCLIENT", True), ("", "toplink.json", True), ("RANK", "link.json", True)]


def test_run_leaves_non_job_files_untouched(config, root):
    for name in IGNORED:
        drop(root, "RANK", name, b"not a job " + name.encode())
        drop(root, None, name, b"not a job " + name.encode())
    drop(root, "RANK/sub", "nested.json", job("RANK", "X", 1))
    drop(root, ".hiddenclient", "h.json", job("RANK", "X", 1))
    before = snapshot(root / "JSON")
    summary = run_once(config)
    assert summary.processed == 0 and summary.pending == 0
    assert snapshot(root / "JSON") == before
    assert not (root / "JSON_STORE").exists()
    assert not (root / "JSON_FAILED").exists()


def test_upper_case_extension_is_processed(config, root):
    data = job("RANK", "X", 1)
    drop(root, "RANK", "UPPER.JSON", data)
    drop(root, "LOREAL", "Mixed.Json", job("LOREAL", "X", 2))
    summary = run_once(config)
    assert summary.archived == 2
    assert (root / "JSON_STORE/RANK/UPPER.JSON").read_bytes() == data
    assert (root / "SYNC/MAKE/Monday Rank/UPPER.JSON").read_bytes() == data
    assert (root / "CLIENT-STORES/LOREAL/IN/Mixed.Json").exists()
    assert not (root / "JSON/RANK/UPPER.JSON").exists()


def test_top_level_file_uses_its_client_code(config, root):
    data = job("BISSELL", "ORDER", 3)
    drop(root, None, "top.json", data)
    summary = run_once(config)
    assert (summary.archived, summary.routed, summary.failed) == (1, 1, 0)
    assert (root / "JSON_STORE/BISSELL/top.json").read_bytes() == data
    assert (root / "CLIENT-STORES/BISSELL-WRIKE/IN/top.json").read_bytes() == data
    assert not (root / "JSON/top.json").exists()


def test_client_code_matching_folder_ignoring_case_is_archived_under_folder_name(config, root):
    data = job("rank", "celtra", 4)
    drop(root, "RANK", "lower.json", data)
    run_once(config)
    assert (root / "JSON_STORE/RANK/lower.json").read_bytes() == data
    assert not (root / "JSON_STORE/rank").exists()
