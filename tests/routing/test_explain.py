"""explain(): a job file's fields and destinations, or its rejection and failed folder; no disk touched."""

from __future__ import annotations

from pathlib import Path

from json_workflow.config import build
from json_workflow.routing.explain import client_folder, explain
from json_workflow.samples import job

CONFIG = build({}, "test", root=Path("/nowhere"))  # never created: explain touches no disk
ROUTER = CONFIG.router()


def explain_in(data: bytes, folder: str | None):
    return explain(data, folder, ROUTER, CONFIG.failed_folder(folder))


def test_a_valid_job_shows_its_fields_and_every_destination_archive_first():
    found = explain_in(job("RANK", "PRODUCTION", 7, title="Spring"), "RANK")
    assert found.rejection is None
    assert dict(found.fields) == {
        "ClientCode": "RANK",
        "JobCategory": "PRODUCTION",
        "StudioCode": "RANK_STUDIO",
        "Title": "Spring",
        "JobNumber": "7",
    }
    assert found.destinations[0].folder == Path("/nowhere/JSON_STORE/RANK") and found.destinations[0].is_archive
    assert {d.folder for d in found.destinations[1:]} == {Path("/nowhere/SYNC/MAKE/Monday Rank")}


def test_a_rejected_job_says_why_and_which_failed_folder_it_would_go_to():
    found = explain_in(b"{not json", "RANK")
    assert found.rejection is not None and found.rejection.stage == "parse"
    assert found.failed_folder == Path("/nowhere/JSON_FAILED/RANK") and found.destinations == ()
    assert explain_in(b"[]", None).failed_folder == Path("/nowhere/JSON_FAILED/_unknown")


def test_the_client_folder_is_the_folder_one_down_in_the_hot_folder_only():
    hot = CONFIG.hot
    assert client_folder(hot / "RANK/a.json", hot) == "RANK"
    assert client_folder(hot / "a.json", hot) is None
    assert client_folder(Path("/elsewhere/RANK/a.json"), hot) is None


def test_a_file_in_the_failed_folder_is_explained_as_its_client_folder():
    """What `retry` would hand back: JSON_FAILED/RANK/a.json is a RANK file."""
    hot, failed = CONFIG.hot, CONFIG.failed
    assert client_folder(failed / "RANK/a.json", hot, failed) == "RANK"
    assert client_folder(failed / "RANK/a.json", hot) is None
    assert client_folder(failed / "a.json", hot, failed) is None
    assert client_folder(failed / "_unknown/a.json", hot, failed) is None  # from the top of the hot folder


def test_a_rejected_job_still_shows_how_each_rule_judged_what_could_be_read():
    """A file set aside for its ClientCode still says which rules its other fields would meet."""
    data = b'{"JobSpecification": {"JobDetails": {"ClientCode": "OTHER", "JobCategory": "CELTRA"}}}'
    found = explain_in(data, "RANK")
    assert found.rejection is not None and found.rejection.stage == "validate"
    rules = dict(found.rules)
    assert rules["Celtra"] == "ClientCode = CELTRA failed: it is 'OTHER'"
    assert rules["LOREAL/IN"] == "ClientCode = LOREAL failed: it is 'OTHER'"
    assert explain_in(b"{not json", "RANK").rules == ()  # nothing could be read


def test_each_rule_says_whether_it_matched_and_which_condition_failed():
    found = explain_in(job("RANK", "CELTRA", 7), "RANK")
    rules = dict(found.rules)
    assert rules["Monday Rank"] is None and rules["Celtra (eligible client)"] is None
    assert rules["LOREAL/IN"] == "ClientCode = LOREAL failed: it is 'RANK'"
    assert list(rules) == [r.name for r in CONFIG.routes]  # every rule, in configuration order
    production = dict(explain_in(job("RANK", "PRODUCTION", 7), "RANK").rules)
    assert production["Celtra (eligible client)"] == "JobCategory = CELTRA failed: it is 'PRODUCTION'"
