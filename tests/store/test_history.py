"""The file history and the failed files, as the store records them from real runs."""

from __future__ import annotations

import contextlib

import pytest

from conftest import drop, make_config
from json_workflow.delivery.retry import retry_known
from json_workflow.run import run_once
from json_workflow.samples import job
from json_workflow.store import open_store

pytestmark = pytest.mark.usefixtures("backend")  # each test on SQLite and on PostgreSQL


def store_of(root):
    return contextlib.closing(open_store(make_config(root)))


def test_a_delivered_file_is_found_by_name_and_job_number_with_every_rule_and_folder(root):
    config = make_config(root)
    drop(root, "RANK", "5903771.json", job("RANK", "CELTRA", 4711))
    run_once(config)
    with store_of(root) as store:
        by_name, by_job = store.history("5903771"), store.history("4711")
    assert by_name == by_job
    [record] = by_name
    assert (record.name, record.client, record.source, record.outcome, record.job) == (
        "RANK/5903771.json", "RANK", "STARTUP", "archived", "4711",
    )  # fmt: skip
    assert sorted(record.routed) == [
        ("Celtra (eligible client)", str(root / "SYNC/MAKE/Celtra - Create_Rename - Project_Design File")),
        ("Monday Rank", str(root / "SYNC/MAKE/Monday Rank")),
    ]
    assert record.finished is not None and record.finished >= record.received


def test_a_failed_file_is_listed_with_its_failed_file_until_it_is_retried(root):
    config = make_config(root)
    drop(root, "LOREAL", "broken.json", b'{"JobSpecification": ')
    run_once(config)
    with store_of(root) as store:
        [failed] = store.failed_files()
        assert (failed.name, failed.stage, failed.outcome) == ("LOREAL/broken.json", "parse", "failed")
        assert failed.reason.startswith("invalid JSON")
        assert failed.failed_as is not None and open(failed.failed_as, "rb").read() == b'{"JobSpecification": '
        [moved] = retry_known(config, [failed.failed_as])
        assert moved.target == root / "JSON/LOREAL/broken.json"
        store.mark_retried([failed.failed_as], 123.0)
        assert store.failed_files() == []
        assert store.file_record(failed.id).retried == 123.0


def test_every_reception_of_a_file_is_kept_newest_first(root):
    config = make_config(root)
    drop(root, "RANK", "again.json", b"{")
    run_once(config)
    drop(root, "RANK", "again.json", job("RANK", "PRODUCTION", 1))
    run_once(config)
    with store_of(root) as store:
        receptions = store.receptions("RANK/again.json")
    assert [r.outcome for r in receptions] == ["archived", "failed"]


def test_search_takes_wildcards_literally(root):
    config = make_config(root)
    drop(root, "RANK", "a_1.json", job("RANK", "PRODUCTION", 1))
    drop(root, "RANK", "ab1.json", job("RANK", "PRODUCTION", 2))
    run_once(config)
    with store_of(root) as store:
        assert [r.name for r in store.history("a_1")] == ["RANK/a_1.json"]
        assert store.history("%") == []
        assert len(store.history("rank/")) == 2  # any case


def test_retry_by_row_refuses_a_path_outside_the_failed_folder(root, outside):
    config = make_config(root)
    victim = outside / "20240101_000000_x.json"
    victim.write_bytes(b"keep")
    [refused] = retry_known(config, [str(victim)])
    assert refused.target is None and "not in the configured failed folder" in refused.skipped
    assert victim.read_bytes() == b"keep"
