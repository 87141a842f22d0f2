"""explain(): a job file's fields and destinations, or its rejection and failed folder; no disk touched."""

from __future__ import annotations

from pathlib import Path

from json_workflow.config import build
from json_workflow.explain import client_folder, explain
from json_workflow.samples import job

CONFIG = build({}, "test", root=Path("/nowhere"))  # never created: explain touches no disk


def test_a_valid_job_shows_its_fields_and_every_destination_archive_first():
    found = explain(job("RANK", "PRODUCTION", 7, title="Spring"), "RANK", CONFIG)
    assert found.rejection is None
    assert dict(found.fields) == {
        "ClientCode": "RANK",
        "JobCategory": "PRODUCTION",
        "StudioCode": "RANK_STUDIO",
        "Title": "Spring",
    }
    assert found.destinations[0].folder == Path("/nowhere/JSON_STORE/RANK") and found.destinations[0].is_archive
    assert {d.folder for d in found.destinations[1:]} == {Path("/nowhere/SYNC/MAKE/Monday Rank")}


def test_a_rejected_job_says_why_and_which_failed_folder_it_would_go_to():
    found = explain(b"{not json", "RANK", CONFIG)
    assert found.rejection is not None and found.rejection.stage == "parse"
    assert found.failed_folder == Path("/nowhere/JSON_FAILED/RANK") and found.destinations == ()
    assert explain(b"[]", None, CONFIG).failed_folder == Path("/nowhere/JSON_FAILED/_unknown")


def test_the_client_folder_is_the_folder_one_down_in_the_hot_folder_only():
    hot = CONFIG.hot
    assert client_folder(hot / "RANK/a.json", hot) == "RANK"
    assert client_folder(hot / "a.json", hot) is None
    assert client_folder(Path("/elsewhere/RANK/a.json"), hot) is None


def test_each_rule_says_whether_it_matched_and_which_condition_failed():
    found = explain(job("RANK", "CELTRA", 7), "RANK", CONFIG)
    rules = dict(found.rules)
    assert rules["Monday Rank"] is None and rules["Celtra (eligible client)"] is None
    assert rules["LOREAL/IN"] == "ClientCode = LOREAL failed: it is 'RANK'"
    assert list(rules) == [r.name for r in CONFIG.routes]  # every rule, in configuration order
    production = dict(explain(job("RANK", "PRODUCTION", 7), "RANK", CONFIG).rules)
    assert production["Celtra (eligible client)"] == "JobCategory = CELTRA failed: it is 'PRODUCTION'"
