"""retry.retry in-process: failed files back to the hot folder under their original names."""

from __future__ import annotations

import os

import pytest

from conftest import FIXED_NOW, FIXED_STAMP, drop, failed_entries, files, make_config, mounted_tmpfs
from json_workflow.delivery.failed import fit_name, original_name
from json_workflow.delivery.retry import retry
from json_workflow.run import run_once
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


# Names too long to keep whole in JSON_FAILED (with the timestamp in front); their reason files keep them.
LONG_NAMES = {
    "ascii-250-bytes": "j" * 245 + ".json",
    "latin-1-250-bytes": os.fsdecode(b"caf\xe9-" + b"\xe9" * 240 + b".json"),  # not UTF-8: a Samba or FTP client's
    "utf-8-cut-inside-a-character": "\u00e9" * 122 + ".json",
}


@pytest.mark.parametrize("name", LONG_NAMES.values(), ids=LONG_NAMES.keys())
def test_retry_restores_a_shortened_name_whole(config, root, name):
    drop(root, "RANK", name, b"{bad")
    run_once(config, clock=lambda: FIXED_NOW)
    (failed,) = [p for p in (root / "JSON_FAILED/RANK").iterdir() if not p.name.endswith(".reason.txt")]
    assert len(os.fsencode(failed.name)) < len(os.fsencode(f"{FIXED_STAMP}_{name}"))  # it was shortened
    (moved,) = retry(config)
    assert moved.target == root / "JSON/RANK" / name
    assert (root / "JSON/RANK" / name).read_bytes() == b"{bad"
    assert files(root / "JSON_FAILED") == {}


LONG = "j" * 245 + ".json"
KEPT = fit_name(LONG)[: -len(".json")]  # what JSON_FAILED keeps of its stem: a hostile name may start with it


@pytest.mark.parametrize(
    "name, line",
    [
        ("x.json", "name: ../../outside/x.json"),
        ("x.json", "name: other.json"),  # another file's reason file
        ("x.json", ""),  # an older reason file, without the name
        (LONG, f"name: {KEPT}/../../../outside/x.json"),
        (LONG, f"name: {KEPT}\\x00.json"),
        (LONG, f"name: {KEPT}\\ud800.json"),  # no file name's bytes make this
        (LONG, f"name: {KEPT}{'j' * 100}.json"),  # too long for a folder entry
    ],
    ids=["escape", "another-file", "no-name-line", "long-escape", "long-nul", "long-surrogate", "long-too-long"],
)
def test_retry_keeps_the_failed_files_own_name_unless_the_reason_file_names_it_plainly(
    config, root, outside, name, line
):
    drop(root, "RANK", name, b"{bad")
    run_once(config, clock=lambda: FIXED_NOW)
    (failed,) = [p for p in (root / "JSON_FAILED/RANK").iterdir() if not p.name.endswith(".reason.txt")]
    reason = failed.with_name(failed.name + ".reason.txt")
    lines = [line if old.startswith("name: ") else old for old in reason.read_text().splitlines()]
    reason.write_text("\n".join(lines) + "\n")
    (moved,) = retry(config)
    own = original_name(failed.name)
    assert moved.target == root / "JSON/RANK" / own
    assert (root / "JSON/RANK" / own).read_bytes() == b"{bad"
    assert list(outside.iterdir()) == [] and sorted(os.listdir(root / "JSON")) == ["RANK"]


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


@pytest.mark.root
def test_retry_from_failed_folder_on_another_filesystem(root, failed_fs):
    (failed_fs / "RANK").mkdir()
    config = make_config(root, paths={"failed": str(failed_fs)})
    drop(root, "RANK", "r.json", b"{rank")
    assert run_once(config).failed == 1
    (moved,) = list(retry(config))
    assert moved.target == root / "JSON/RANK/r.json"
    assert (root / "JSON/RANK/r.json").read_bytes() == b"{rank"
    assert os.listdir(failed_fs / "RANK") == []
