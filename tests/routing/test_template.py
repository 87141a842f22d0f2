"""Destinations with placeholders: checked at load, filled per job, unsafe values failing the file unwritten."""

from __future__ import annotations

import json
import os

import pytest

from conftest import drop, files, make_config, read_reason
from json_workflow.config import build
from json_workflow.errors import ConfigError, Rejected
from json_workflow.parse import parse_job
from json_workflow.run import run_once
from json_workflow.samples import job


def rule(destination: str, when: dict | None = None) -> dict:
    return {"routes": [{"name": "t", "destination": destination, "when": when or {"ClientCode": {"exists": True}}}]}


def a_job(client: str = "RANK", folder: str | None = "RANK", **fields) -> bytes:
    document = json.loads(job(client, "PRODUCTION", 1))
    document["JobSpecification"]["JobDetails"].update(fields)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "destination, when, message",
    [
        ("OUT/{Colour}", None, "routes[0].destination: unknown placeholder {Colour}: use ClientCode, JobCategory"),
        ("OUT/{ClientCode", None, "has an unbalanced { or }"),
        ("OUT/}", None, "has an unbalanced { or }"),
        ("OUT/{}", None, "unknown placeholder {}"),
    ],
)
def test_a_bad_placeholder_is_a_configuration_error_naming_the_key(destination, when, message):
    with pytest.raises(ConfigError) as e:
        build(rule(destination, when), "test.toml")
    assert any(message in p for p in e.value.problems), e.value.problems


def test_known_placeholders_are_the_jobs_fields_and_those_the_rule_names():
    build(rule("OUT/{ClientCode}/{jobcategory}/{StudioCode}/{Title}/{JobNumber}"), "t")
    build(rule("OUT/{JobSpecification.Delivery.Method}", {"JobSpecification.Delivery.Method": {"exists": True}}), "t")


def plan_of(config, data: bytes, folder="RANK"):
    return config.router().plan(parse_job(data, folder))


def test_a_destination_is_filled_per_job_and_remembered_per_value(root):
    config = make_config(root, **rule("CLIENT-STORES/{ClientCode}/IN-{JobCategory}"))
    router = config.router()
    for client in ("RANK", "LOREAL", "RANK"):
        [_, routed] = router.plan(parse_job(job(client, "SOCIAL", 1), client))
        assert routed.folder == root / f"CLIENT-STORES/{client}/IN-SOCIAL"


@pytest.mark.parametrize(
    "value, shown",
    [("", "''"), ("..", "'..'"), ("a/b", "'a/b'"), (".hidden", "'.hidden'"), ("bell\x07", "'bell\\x07'"),
     (None, "null"), ({"x": 1}, "a JSON object"), ("\u200bzero-width", "'\\u200bzero-width'")],
)  # fmt: skip
def test_an_unsafe_value_fails_the_file_before_anything_is_written(root, value, shown):
    config = make_config(root, **rule("OUT/{StudioCode}"))
    with pytest.raises(Rejected) as e:
        plan_of(config, a_job(StudioCode=value))
    assert e.value.stage == "route"
    assert f"{{StudioCode}} is {shown}, not a safe folder name" in e.value.reason
    drop(root, "RANK", "x.json", a_job(StudioCode=value))
    summary = run_once(config)
    assert (summary.archived, summary.failed) == (0, 1)
    assert not (root / "OUT").exists() and not (root / "JSON_STORE").exists()  # nothing written
    [failed] = [p for p in (root / "JSON_FAILED/RANK").iterdir() if not p.name.endswith(".reason.txt")]
    assert "not a safe folder name" in read_reason(failed)["reason"]


OWN = {"hot": "hot folder", "archive": "archive folder", "failed": "failed folder", "logs": "logs folder",
       "state": "state folder"}  # fmt: skip


@pytest.mark.parametrize("custom", [False, True])
def test_no_filled_destination_is_in_or_over_one_of_json_workflows_own_folders(root, custom):
    # "whatever paths.* says": the default names, then every folder renamed (the hot folder one level down)
    paths = {"hot": "IN/HOT", "archive": "KEEP", "failed": "BAD", "logs": "LOGS", "state": "STATE"} if custom else {}
    config = make_config(root, paths=paths, **rule("{Title}/{StudioCode}", {"Title": {"exists": True}}))
    for key, name in OWN.items():
        own = getattr(config, key)
        title, studio = own.relative_to(root).parts[0], "X"
        if len(own.relative_to(root).parts) > 1:  # IN/HOT: IN holds it; IN/HOT is in it
            studio = own.name
        with pytest.raises(Rejected) as e:
            plan_of(config, a_job(Title=title, StudioCode=studio))
        assert e.value.stage == "route"
        assert f"would be in or over the {name} {own} (paths.{key})" in e.value.reason, e.value.reason
    assert plan_of(config, a_job(Title="RANK", StudioCode="X"))[1].folder == root / "RANK/X"


def test_a_job_titled_like_the_state_folder_fails_at_route_and_nothing_lands_there(root):
    config = make_config(root, **rule("{Title}", {"Title": {"exists": True}}))
    drop(root, "RANK", "x.json", data := a_job(Title="JSON_PARSER_STATE"))
    (root / "LINK").symlink_to(root / "JSON_PARSER_LOGS", target_is_directory=True)
    drop(root, "RANK", "y.json", a_job(Title="LINK"))  # through a symlink it is still the logs folder
    summary = run_once(config)
    assert (summary.archived, summary.failed) == (0, 2)
    assert sorted(os.listdir(root / "JSON_PARSER_STATE")) == ["journal.sqlite3", "run.lock"]
    assert not (root / "JSON_PARSER_LOGS").exists() or "y.json" not in os.listdir(root / "JSON_PARSER_LOGS")
    failed = sorted(p for p in (root / "JSON_FAILED/RANK").iterdir() if not p.name.endswith(".reason.txt"))
    reasons = [read_reason(p) for p in failed]
    assert [r["stage"] for r in reasons] == ["route", "route"]
    assert "would be in or over the state folder" in reasons[0]["reason"]
    assert "would be in or over the logs folder" in reasons[1]["reason"]
    assert failed[0].read_bytes() == data


def test_folders_from_placeholders_are_made_below_the_root_and_never_outside(root, outside):
    config = make_config(root, routes=[
        {"name": "in", "destination": "CLIENT-STORES/{ClientCode}/IN", "when": {"ClientCode": "RANK"}},
        {"name": "out", "destination": str(outside / "{ClientCode}"), "when": {"ClientCode": "LOREAL"}},
    ])  # fmt: skip
    drop(root, "RANK", "r.json", job("RANK", "X", 1))
    drop(root, "LOREAL", "l.json", job("LOREAL", "X", 2))
    summary = run_once(config)
    assert (root / "CLIENT-STORES/RANK/IN/r.json").read_bytes() == job("RANK", "X", 1)
    assert (summary.archived, summary.pending) == (1, 1)  # LOREAL waits: outside/LOREAL does not exist
    assert files(outside) == {} and (root / "JSON/LOREAL/l.json").exists()
    (outside / "LOREAL").mkdir()
    assert run_once(config).archived == 1
    assert (outside / "LOREAL/l.json").read_bytes() == job("LOREAL", "X", 2)


@pytest.mark.parametrize("title", ["json_parser_state", "Json", "json_store", "Json_Failed", "JSON_parser_LOGS"])
def test_an_own_folder_in_another_case_is_off_limits_too(root, title):
    # exFAT and SMB shares ignore case: "json_parser_state" is the state folder there
    config = make_config(root, **rule("{Title}", {"Title": {"exists": True}}))
    with pytest.raises(Rejected, match="would be in or over the"):
        plan_of(config, a_job(Title=title))
    with pytest.raises(ConfigError, match=r"routes\[0\].destination: .* (is|is inside) the"):
        make_config(root, **rule(title))


@pytest.mark.root
def test_an_own_folder_reached_through_a_bind_mount_is_off_limits(root, tmp_path):
    from conftest import _mounted
    from json_workflow.config import load

    (root / "JSON_PARSER_STATE").mkdir()
    alias = tmp_path / "alias"
    alias.mkdir()
    for _ in _mounted(["mount", "--bind", str(root / "JSON_PARSER_STATE")], alias):
        config_file = tmp_path / "c.toml"
        config_file.write_text(f'[[routes]]\nname = "r"\ndestination = "{alias}"\nwhen = {{ ClientCode = "RANK" }}\n')
        with pytest.raises(ConfigError) as e:
            load(config_file, root)
        assert e.value.problems == [
            f"routes[0].destination: {alias} is in or at the state folder {root}/JSON_PARSER_STATE (paths.state) on "
            "disk, by another name (a bind mount, or a name that differs only in case on a filesystem that ignores "
            "case); json-workflow's own folders never receive copies: choose a folder outside them"
        ]
        config = make_config(root, **rule(str(tmp_path) + "/{Title}", {"Title": {"exists": True}}))
        with pytest.raises(Rejected, match=r"would be in or over the state folder"):
            plan_of(config, a_job(Title="alias"))


def test_on_exfat_an_own_folder_through_a_bind_mount_and_in_another_case_is_off_limits(exfat, tmp_path):
    # exFAT ignores case and (through FUSE) gives each spelling of a name an inode of its own
    from conftest import _mounted
    from json_workflow.config import load

    root = exfat / "root"
    (root / "JSON").mkdir(parents=True)
    (root / "JSON_PARSER_STATE").mkdir()
    alias = tmp_path / "bindroot"
    alias.mkdir()
    for _ in _mounted(["mount", "--bind", str(root)], alias):
        config_file = tmp_path / "c.toml"
        config_file.write_text(
            f'[[routes]]\nname = "r"\ndestination = "{alias}/json_parser_state"\nwhen = {{ ClientCode = "RANK" }}\n'
        )
        with pytest.raises(ConfigError, match=r"routes\[0\].destination: .* the state folder .* on disk"):
            load(config_file, root)
        config = make_config(root, **rule(str(alias) + "/{Title}", {"Title": {"exists": True}}))
        for title in ("json_parser_state", "json", "Json_Store"):
            with pytest.raises(Rejected, match="would be in or over the"):
                plan_of(config, a_job(Title=title))
        assert plan_of(config, a_job(Title="ELSEWHERE"))[1].folder == alias / "ELSEWHERE"
