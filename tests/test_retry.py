"""retry.retry in-process: failed files back to the hot folder under their original names."""

from __future__ import annotations

import os

import pytest

from conftest import FIXED_NOW, mounted_tmpfs, FIXED_STAMP, drop, failed_entries, files, make_config
from json_workflow.deliver import original_name
from json_workflow.pipeline import run_once
from json_workflow.retry import retry
from json_workflow.samples import job


def fail_some(config, root):
    drop(root, "RANK", "r.json", b"{rank")
    drop(root, "LOREAL", "l.json", b"{loreal")
    drop(root, None, "top.json", b"{top")
    run_once(config, clock=lambda: FIXED_NOW)


@pytest.mark.parametrize(
    "failed, original",
    [
        (f"{FIXED_STAMP}_x.json", "x.json"),
        (f"{FIXED_STAMP}-2_x.json", "x.json"),
        (f"{FIXED_STAMP}-17_{FIXED_STAMP}_x.json", f"{FIXED_STAMP}_x.json"),
        ("x.json", "x.json"),
    ],
)
def test_original_name_drops_one_timestamp_prefix(failed, original):
    assert original_name(failed) == original


def test_retry_moves_everything_back_and_removes_reasons(config, root):
    fail_some(config, root)
    moved = list(retry(config))
    assert len(moved) == 3 and all(m.target is not None for m in moved)
    assert (root / "JSON/RANK/r.json").read_bytes() == b"{rank"
    assert (root / "JSON/LOREAL/l.json").read_bytes() == b"{loreal"
    assert (root / "JSON/top.json").read_bytes() == b"{top"
    assert files(root / "JSON_FAILED") == {}


def test_retry_limited_to_clients_ignoring_case(config, root):
    fail_some(config, root)
    moved = list(retry(config, ["rank"]))
    assert [m.target for m in moved] == [root / "JSON/RANK/r.json"]
    assert len(failed_entries(root, "l.json")) == 1
    assert len(failed_entries(root, "top.json")) == 1
    assert (root / "JSON_FAILED/LOREAL" / f"{FIXED_STAMP}_l.json.reason.txt").exists()


def test_retry_unknown_goes_back_to_top_of_hot_folder(config, root):
    fail_some(config, root)
    (moved,) = list(retry(config, ["_unknown"]))
    assert moved.target == root / "JSON/top.json"


def test_retry_never_overwrites_a_waiting_file(config, root):
    fail_some(config, root)
    drop(root, "RANK", "r.json", b"newer")
    results = {m.source.name: m.target for m in retry(config)}
    assert results[f"{FIXED_STAMP}_r.json"] is None
    assert (root / "JSON/RANK/r.json").read_bytes() == b"newer"
    (still,) = failed_entries(root, "r.json")
    assert still.read_bytes() == b"{rank"
    assert (still.parent / (still.name + ".reason.txt")).exists()


def test_retry_without_failed_folder_does_nothing(config, root):
    assert list(retry(config)) == []


def test_retried_file_is_processed_by_the_next_run(config, root):
    drop(root, "RANK", "r.json", job("LOREAL", "X", 1))  # wrong folder
    run_once(config)
    # the operator fixes the file where it failed, then retries
    (failed,) = failed_entries(root, "r.json")
    failed.unlink()
    failed.write_bytes(job("RANK", "X", 1))
    list(retry(config))
    assert run_once(config).archived == 1
    assert (root / "SYNC/MAKE/Monday Rank/r.json").read_bytes() == job("RANK", "X", 1)



@pytest.fixture
def failed_fs(tmp_path):
    yield from mounted_tmpfs(tmp_path / "failedfs", "1m")


def test_retry_from_failed_folder_on_another_filesystem(root, failed_fs):
    (failed_fs / "RANK").mkdir()
    config = make_config(root, paths={"failed": str(failed_fs)})
    drop(root, "RANK", "r.json", b"{rank")
    assert run_once(config).failed == 1
    (moved,) = list(retry(config))
    assert moved.target == root / "JSON/RANK/r.json"
    assert (root / "JSON/RANK/r.json").read_bytes() == b"{rank"
    assert os.listdir(failed_fs / "RANK") == []