"""route.matches / route.route / route.plan: pure routing decisions against the built-in matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CELTRA, expected_places
from json_workflow.config import build
from json_workflow.parse import parse_job
from json_workflow.routing.route import matches, route, routed_names
from json_workflow.routing.rules import SEED_ROUTES, Rule
from json_workflow.samples import job

CONFIG = build({}, "test", root="/r")
ROOT = Path("/r")


def names(details) -> list[str]:
    return [r.name for r in route(details, CONFIG.routes)]


def rule(**when) -> Rule:
    return Rule(name="r", destination="d", when=when)


@pytest.mark.parametrize(
    "client, category, fired",
    [
        ("RANK", "PRODUCTION", ["Monday Rank"]),
        ("RECKITTBENCKISER", "SOCIAL", ["Monday RB"]),
        ("BISSELL", "ORDER", ["BISSELL-WRIKE/IN"]),
        ("LOREAL", "CAMPAIGN", ["LOREAL/IN"]),
        ("CELTRA", "DIGITAL", ["Celtra"]),
        ("CELTRA", "CELTRA", ["Celtra"]),
        ("RANK", "CELTRA", ["Monday Rank", "Celtra (eligible client)"]),
        ("RECKITTBENCKISER", "CELTRA", ["Monday RB", "Celtra (eligible client)"]),
        ("OLIVER", "CELTRA", ["Celtra (eligible client)"]),
        ("OLIVER", "PRODUCTION", []),
        ("BISSELL", "CELTRA", ["BISSELL-WRIKE/IN"]),
        ("ACME", "CELTRA", []),
        ("rank", "celtra", ["Monday Rank", "Celtra (eligible client)"]),
        ("Paypal", "Celtra", ["Celtra (eligible client)"]),
    ],
)
def test_route_fires_every_matching_rule_in_order(client, category, fired):
    assert names({"ClientCode": client, "JobCategory": category}) == fired


def test_matches_is_case_insensitive_on_both_sides():
    assert matches(rule(ClientCode=["rAnK"]), {"ClientCode": "RaNk"})


def test_field_names_match_ignoring_case():
    assert matches(rule(clientcode=["RANK"]), {"ClientCode": "rank"})
    assert matches(rule(CLIENTCODE=["RANK"], jobCategory=["x"]), {"ClientCode": "RANK", "JobCategory": "X"})
    assert not matches(rule(clientcode=["RANK"]), {"ClientCode": "LOREAL"})
    assert not matches(rule(clientcode=["RANK"]), {"ClientCodes": "RANK"})


def test_the_field_spelled_as_the_rule_wins_then_the_first_differing_only_in_case():
    details = {"clientcode": "LOREAL", "ClientCode": "RANK", "CLIENTCODE": "BISSELL"}
    assert matches(rule(ClientCode=["RANK"]), details)
    assert matches(rule(CLIENTCODE=["BISSELL"]), details)
    assert matches(rule(cLiEnTcOdE=["LOREAL"]), details)


def test_matches_needs_every_field():
    r = rule(ClientCode=["A"], JobCategory=["B"])
    assert matches(r, {"ClientCode": "a", "JobCategory": "b"})
    assert not matches(r, {"ClientCode": "a", "JobCategory": "c"})
    assert not matches(r, {"ClientCode": "a"})


def test_matches_any_value_of_a_list():
    r = rule(ClientCode=["A", "B", "C"])
    assert matches(r, {"ClientCode": "b"})
    assert not matches(r, {"ClientCode": "D"})


def test_matches_no_partial_or_substring_match():
    r = rule(ClientCode=["RANK"])
    assert not matches(r, {"ClientCode": "RANKING"})
    assert not matches(r, {"ClientCode": "RAN"})
    assert not matches(r, {"ClientCode": " RANK"})


def test_matches_compares_numbers_as_text_and_never_containers():
    r = Rule(name="n", destination="d", when={"JobNumber": 5})
    assert matches(r, {"JobNumber": 5})
    assert matches(r, {"JobNumber": "5"})
    assert not matches(r, {"JobNumber": [5]})
    assert not matches(r, {"JobNumber": {"5": 5}})
    assert not matches(r, {"JobNumber": None})


def test_route_with_no_rules_is_empty():
    assert route({"ClientCode": "RANK"}, []) == []


@pytest.mark.parametrize("client", ["CIBC", "OLIVER", "ADIDAS", "PAYPAL", "RECKITTBENCKISER", "BAYER", "3M", "RANK"])
def test_plan_sends_eligible_celtra_jobs_to_celtra(client):
    dests = CONFIG.router().plan(parse_job(job(client, "CELTRA", 1), client))
    folders = {str(d.folder.relative_to(ROOT)) for d in dests}
    assert folders == expected_places(client, "CELTRA")
    assert CELTRA in folders


def test_plan_archive_first_then_rules():
    dests = CONFIG.router().plan(parse_job(job("RANK", "CELTRA", 1), "RANK"))
    assert dests[0].folder == ROOT / "JSON_STORE/RANK"
    assert dests[0].is_archive
    assert [(d.folder, d.reasons) for d in dests[1:]] == [
        (ROOT / "SYNC/MAKE/Monday Rank", ("Monday Rank",)),
        (ROOT / CELTRA, ("Celtra (eligible client)",)),
    ]
    assert routed_names(dests) == ["Monday Rank", "Celtra (eligible client)"]


def test_plan_delivers_once_to_a_folder_chosen_by_two_rules():
    config = build(
        {
            "routes": [
                {"name": "a", "destination": "OUT", "when": {"ClientCode": "X"}},
                {"name": "b", "destination": "OUT", "when": {"JobCategory": "Y"}},
            ]
        },
        "t",
        root="/r",
    )
    dests = config.router().plan(parse_job(job("X", "Y", 1), None))
    assert [(d.folder, d.reasons) for d in dests] == [(ROOT / "JSON_STORE/X", ("archive",)), (ROOT / "OUT", ("a", "b"))]
    assert routed_names(dests) == ["a + b"]


@pytest.mark.parametrize(
    "client, category", [("RANK", "CELTRA"), ("OLIVER", "CELTRA"), ("LOREAL", "X"), ("BISSELL", "CELTRA")]
)
def test_plan_with_lower_case_field_names_is_the_plan_of_the_canonical_ones(client, category):
    lower = build(
        {"routes": [{**r, "when": {f.lower(): v for f, v in r["when"].items()}} for r in SEED_ROUTES]}, "t", root="/r"
    )
    one = parse_job(job(client, category, 1), client)
    assert lower.router().plan(one) == CONFIG.router().plan(one)
    assert {str(d.folder.relative_to(ROOT)) for d in lower.router().plan(one)} == expected_places(client, category)


def test_plan_unrouted_client_is_archive_only():
    dests = CONFIG.router().plan(parse_job(job("ACME", "CELTRA", 1), "ACME"))
    assert [d.folder for d in dests] == [ROOT / "JSON_STORE/ACME"]
    assert routed_names(dests) == []


def test_plan_absolute_destination_stays_absolute():
    config = build(
        {"routes": [{"name": "m", "destination": "/mnt/share/IN", "when": {"ClientCode": "X"}}]}, "t", root="/r"
    )
    dests = config.router().plan(parse_job(job("X", "Y", 1), None))
    assert dests[1].folder == Path("/mnt/share/IN")
