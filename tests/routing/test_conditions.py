"""Rule conditions: each operator, negation, presence, dotted paths, and the configuration errors they give."""

from __future__ import annotations

import json

import pytest

from conftest import drop, make_config
from json_workflow.config import build
from json_workflow.errors import ConfigError
from json_workflow.parse import parse_job
from json_workflow.routing.conditions import ABSENT, condition, lookup
from json_workflow.routing.route import matches, why
from json_workflow.routing.rules import Rule
from json_workflow.run import run_once
from json_workflow.samples import job

DOCUMENT = {
    "JobSpecification": {
        "JobDetails": {"ClientCode": "RANK", "JobCategory": "CELTRA", "Title": "Spring Sale 2027", "Rush": None},
        "Delivery": {"Method": "FTP", "Targets": ["a", "b"]},
    }
}
DETAILS = DOCUMENT["JobSpecification"]["JobDetails"]


def holds(when_value, field="Title") -> bool:
    return condition(when_value).test(lookup(DETAILS, DOCUMENT, field))


@pytest.mark.parametrize(
    "when_value, expected",
    [
        ("spring sale 2027", True),  # equality ignores case
        (["x", "SPRING SALE 2027"], True),
        ("Spring", False),  # equality is whole
        ({"glob": "spring*"}, True),  # glob ignores case, like equality
        ({"glob": "*Sale ????"}, True),
        ({"glob": "Sale*"}, False),
        ({"regex": r"Spring Sale \d{4}"}, True),  # a full match
        ({"regex": r"Sale \d{4}"}, False),  # not a search
        ({"regex": r"spring sale \d{4}"}, False),  # as written: case counts (use (?i) to ignore it)
        ({"regex": r"(?i)spring sale \d{4}"}, True),
        ({"exists": True}, True),
        ({"exists": False}, False),
        ({"not": "spring sale 2027"}, False),
        ({"not": {"glob": "Autumn*"}}, True),
        ({"not": {"not": {"regex": "Spring.*"}}}, True),
    ],
)
def test_each_operator_on_a_present_field(when_value, expected):
    assert holds(when_value) is expected


@pytest.mark.parametrize(
    "field, present",
    [("Title", True), ("Rush", False), ("Missing", False), ("JobSpecification.Delivery.Targets", True)],
)
def test_exists_means_present_and_not_null(field, present):
    assert holds({"exists": True}, field) is present
    assert holds({"exists": False}, field) is not present
    assert holds({"not": {"exists": True}}, field) is not present


def test_a_missing_null_or_structured_field_matches_no_value_test():
    for field in ("Missing", "Rush", "JobSpecification.Delivery"):
        for when_value in ("x", {"glob": "*"}, {"regex": ".*"}):
            assert not holds(when_value, field), (field, when_value)
        assert holds({"not": {"glob": "*"}}, field)


def test_dotted_paths_start_at_the_top_and_match_names_in_any_case():
    assert lookup(DETAILS, DOCUMENT, "JobSpecification.Delivery.Method") == "FTP"
    assert lookup(DETAILS, DOCUMENT, "jobspecification.DELIVERY.method") == "FTP"
    assert lookup(DETAILS, DOCUMENT, "JobSpecification.Delivery.Method.Deeper") is ABSENT
    assert lookup(DETAILS, DOCUMENT, "JobSpecification.Nothing.Method") is ABSENT
    assert lookup(DETAILS, DOCUMENT, "clientcode") == "RANK"  # a plain name is a JobDetails field


def rules(*whens) -> dict:
    return {"routes": [{"name": f"r{n}", "destination": f"D{n}", "when": w} for n, w in enumerate(whens)]}


@pytest.mark.parametrize(
    "when, message",
    [
        ({"Title": {"regex": "(unclosed"}}, "routes[0].when.Title: invalid regex '(unclosed': missing ), unterminated"),
        ({"Title": {"glob": ""}}, "routes[0].when.Title: glob takes a non-empty string"),
        ({"Title": {"like": "x"}}, "routes[0].when.Title: unknown operator 'like': expected one of glob, regex"),
        ({"Title": {"exists": "yes"}}, "routes[0].when.Title: exists takes true or false"),
        ({"Title": {"not": {"regex": "["}}}, "routes[0].when.Title: invalid regex '['"),
        ({}, "routes[0].when: "),
        ({"JobSpecification..Method": "x"}, "is not a field name or a dotted path"),
    ],
)
def test_a_bad_condition_is_a_configuration_error_naming_the_key(when, message):
    with pytest.raises(ConfigError) as e:
        build(rules(when), "test.toml")
    assert any(message in p for p in e.value.problems), e.value.problems


def test_the_router_decides_as_matches_does_and_tells_values_apart_where_a_regex_would():
    config = build(rules({"Title": {"regex": "Spring.*"}}, {"JobSpecification.Delivery.Method": {"glob": "f*"}}), "t")
    router = config.router()
    for title, expected in (("Spring Sale", ["r0", "r1"]), ("spring sale", ["r1"]), ("Spring Sale", ["r0", "r1"])):
        document = {**DOCUMENT, "JobSpecification": {**DOCUMENT["JobSpecification"]}}
        document["JobSpecification"]["JobDetails"] = {**DETAILS, "Title": title}
        job = parse_job(json.dumps(document).encode(), "RANK")
        routed = [name for d in router.plan(job) if not d.is_archive for name in d.reasons]
        assert routed == expected, title
        assert [r.name for r in config.routes if matches(r, job.details, job.document)] == expected


def test_why_names_the_first_condition_that_failed_and_the_value_it_saw():
    rule = Rule(name="x", destination="d", when={"ClientCode": "RANK", "Title": {"glob": "Autumn*"}})
    assert why(rule, DETAILS, DOCUMENT) == "Title matches glob 'Autumn*' failed: it is 'Spring Sale 2027'"
    assert why(Rule(name="y", destination="d", when={"Missing": "x"}), DETAILS, DOCUMENT) == (
        "Missing = x failed: it is absent"
    )
    assert why(Rule(name="z", destination="d", when={"ClientCode": {"not": "LOREAL"}}), DETAILS, DOCUMENT) is None


def test_check_config_describes_operators_readably(root):
    config = make_config(root, **rules({"Title": {"not": {"glob": "Test*"}}, "Rush": {"exists": False}}))
    assert config.routes[0].describe() == "Title does not match glob 'Test*' and Rush is absent"
    negated = make_config(root, **rules({"ClientCode": {"not": ["A", "B"]}, "X": {"not": {"exists": False}}}))
    assert negated.routes[0].describe() == "ClientCode not in A, B and X exists"


def test_a_rule_on_a_dotted_path_delivers_through_a_run(root):
    config = make_config(root, **rules({"JobSpecification.Delivery.Method": {"glob": "ft*"}}))
    assert config.dotted_fields and not make_config(root).dotted_fields
    document = json.loads(job("RANK", "X", 1))
    document["JobSpecification"]["Delivery"] = {"Method": "FTP"}
    drop(root, "RANK", "ftp.json", json.dumps(document).encode())
    drop(root, "RANK", "plain.json", job("RANK", "X", 2))
    assert run_once(config).routed == 1
    assert [p.name for p in (root / "D0").iterdir()] == ["ftp.json"]
