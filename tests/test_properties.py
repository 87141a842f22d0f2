"""Hypothesis properties: route() fires exactly the matching rules; nothing is lost or escapes root."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from json_workflow.config import build
from json_workflow.errors import Rejected
from json_workflow.parse import Job, is_safe_folder_name, parse_job
from json_workflow.routing.route import route
from json_workflow.routing.rules import Rule
from json_workflow.run import run_once
from json_workflow.samples import job

FIELDS = ["ClientCode", "JobCategory", "StudioCode"]
word = st.text(alphabet="aAbB", min_size=1, max_size=2)
when_value = st.one_of(word, st.sampled_from(["1", "2"]))
detail_value = st.one_of(
    word, word, word, st.integers(0, 3), st.none(), st.lists(word, max_size=2), st.just({"a": "a"})
)
details_strategy = st.dictionaries(st.sampled_from(FIELDS + ["Other"]), detail_value, max_size=4)


def case_variants(value) -> st.SearchStrategy[str]:
    """The value itself under random case, so that rules built from it often match."""
    text = str(value)
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.swapcase() if f else c for c, f in zip(text, flips, strict=False))
    )


@st.composite
def rule_tables(draw, details):
    """A `when` table whose values are random words or case variants of the details' own values,
    and whose field names are spelled as in the details or under random case (names match ignoring case)."""
    table = {}
    any_field = st.sampled_from(FIELDS + ["Other"])
    own_field = st.sampled_from(sorted(details)) if details else any_field
    for field in draw(
        st.lists(st.one_of(own_field, own_field, own_field, any_field), min_size=1, max_size=3, unique=True)
    ):
        value = details.get(field)
        near = case_variants(value) if isinstance(value, str | int) and not isinstance(value, bool) else when_value
        table[draw(st.one_of(st.just(field), case_variants(field)))] = draw(
            st.lists(st.one_of(near, near, when_value), min_size=1, max_size=3)
        )
    return table


def canonical(when: dict[str, list[str]]) -> dict[str, list[str]]:
    """The table with its field names spelled as in FIELDS."""
    spelled = {f.lower(): f for f in FIELDS + ["Other"]}
    return {spelled[field.lower()]: values for field, values in when.items()}


def config_of(tables: list[dict[str, list[str]]]):
    """A configuration of one rule per table: r0 sends to D0, r1 to D1, ..."""
    return build(
        {"routes": [{"name": f"r{i}", "destination": f"D{i}", "when": t} for i, t in enumerate(tables)]},
        "test",
        root="/r",
    )


def oracle_fires(when: dict[str, list[str]], details: dict) -> bool:
    """Independent statement of the rule: every field present (any case), scalar, equal to one value ignoring case."""
    # The details never hold two names differing only in case: which one a rule takes does not arise here.
    named = {name.lower(): value for name, value in details.items()}
    for field, values in when.items():
        if field.lower() not in named:
            return False
        value = named[field.lower()]
        if isinstance(value, bool) or not isinstance(value, str | int):
            return False
        if str(value).lower() not in {v.lower() for v in values}:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(data=st.data(), details=details_strategy)
def test_route_fires_exactly_the_matching_rules_in_order(data, details):
    tables = data.draw(st.lists(rule_tables(details), max_size=8))
    rules = [Rule(name=f"r{i}", destination=f"D{i}", when=t) for i, t in enumerate(tables)]
    expected = [f"r{i}" for i, t in enumerate(tables) if oracle_fires(t, details)]
    assert [r.name for r in route(details, rules)] == expected


@settings(max_examples=200, deadline=None)
@given(data=st.data(), jobs=st.lists(details_strategy, min_size=2, max_size=12))
def test_router_remembered_plans_equal_fresh_decisions(data, jobs):
    """The Router remembers a plan per client and rule-field values: never one another job should differ from."""
    tables = data.draw(st.lists(rule_tables(jobs[0]), max_size=6))
    config = config_of(tables)
    router = config.router()
    for details in jobs:
        one = Job(client=data.draw(st.sampled_from(["A", "B"])), category="X", studio=None, title=None, details=details)
        expected = config.router().plan(one)
        assert router.plan(one) == expected
        fired = {name for d in expected if not d.is_archive for name in d.reasons}
        assert fired == {f"r{i}" for i, t in enumerate(tables) if oracle_fires(t, details)}


@settings(max_examples=200, deadline=None)
@given(data=st.data(), jobs=st.lists(details_strategy, min_size=1, max_size=6))
def test_field_names_in_any_case_plan_like_the_canonical_ones(data, jobs):
    tables = data.draw(st.lists(rule_tables(jobs[0]), max_size=6))
    as_written = config_of(tables).router()
    spelled = config_of([canonical(t) for t in tables]).router()
    for details in jobs:
        one = Job(client="A", category="X", studio=None, title=None, details=details)
        assert as_written.plan(one) == spelled.plan(one)


# Operators on the same small alphabet, so that they often hold: glob, regex (case counts), not, exists.
operator_value = st.one_of(
    st.lists(when_value, min_size=1, max_size=2),
    st.builds(lambda p: {"glob": p}, st.sampled_from(["a*", "*B", "?", "[ab]*", "*"])),
    st.builds(lambda p: {"regex": p}, st.sampled_from(["a+", "[AB]b?", "(?i)ab", ".", r"\d"])),
    st.builds(lambda b: {"exists": b}, st.booleans()),
)
condition_value = st.one_of(operator_value, st.builds(lambda v: {"not": v}, operator_value))


def oracle_holds(value_as_written, details: dict, field: str) -> bool:
    """Independent statement of one condition, from the README's words."""
    named = {name.lower(): value for name, value in details.items()}
    present = field.lower() in named
    value = named.get(field.lower())
    text = None if (value is None or isinstance(value, dict | list)) else str(value)
    if isinstance(value, bool):
        text = str(value).lower()
    if isinstance(value_as_written, list):
        return text is not None and text.lower() in {v.lower() for v in value_as_written}
    ((operator, operand),) = value_as_written.items()
    if operator == "not":
        return not oracle_holds(operand, details, field)
    if operator == "exists":
        return (present and value is not None) == operand
    if text is None:
        return False
    if operator == "glob":
        return fnmatch.fnmatch(text.lower(), operand.lower())
    return re.fullmatch(operand, text) is not None


@settings(max_examples=300, deadline=None)
@given(data=st.data(), jobs=st.lists(details_strategy, min_size=1, max_size=8))
def test_operators_route_as_stated_and_remembered_plans_never_differ(data, jobs):
    conditions = data.draw(
        st.lists(
            st.dictionaries(st.sampled_from(FIELDS + ["Other"]), condition_value, min_size=1, max_size=2), max_size=5
        )
    )
    config = config_of(conditions)
    router = config.router()
    for details in jobs:
        one = Job(client="A", category="X", studio=None, title=None, details=details)
        fired = {name for d in router.plan(one) if not d.is_archive for name in d.reasons}
        expected = {
            f"r{i}" for i, when in enumerate(conditions) if all(oracle_holds(v, details, f) for f, v in when.items())
        }
        assert fired == expected, (details, conditions)
        assert router.plan(one) == config.router().plan(one)


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=120))
def test_safe_folder_name_is_exactly_one_plain_component(name):
    if is_safe_folder_name(name):
        assert name not in ("", ".", "..")
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".")
        assert os.path.normpath(os.path.join("/base", name)) == "/base/" + name
        assert os.path.dirname(os.path.join("/base", name)) == "/base"


@settings(max_examples=200, deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["JobSpecification", "JobDetails", "ClientCode", "JobCategory", "x"]), c, max_size=3
                )
            ),
            max_leaves=10,
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_parse_job_returns_a_job_or_rejects_never_crashes(raw):
    try:
        j = parse_job(raw, None)
    except Rejected as r:
        assert r.stage in ("parse", "validate") and r.reason
    else:
        assert is_safe_folder_name(j.client) and j.category.strip()


# --- nothing is lost, nothing escapes root --------------------------------------------------------

LOCATIONS = [None, "RANK", "LOREAL", "ACME", "CELTRA"]
CODES = ["RANK", "rank", "LOREAL", "ACME", "CELTRA", "OLIVER", "../x", "a/b", "ABSOLUTE", "..", "../../outside", ""]
SAFE_CODES = {"RANK", "rank", "LOREAL", "ACME", "CELTRA", "OLIVER"}
CORRUPTIONS = [
    "none",
    "none",
    "bom",
    "upper_ext",
    "truncate",
    "empty",
    "latin1",
    "array",
    "nodetails",
    "nocategory",
    "deep",
]
GOOD_CORRUPTIONS = {"none", "bom", "upper_ext"}

inputs = st.lists(
    st.tuples(
        st.sampled_from(LOCATIONS),
        st.sampled_from(CODES),
        st.sampled_from(["CELTRA", "PRODUCTION"]),
        st.sampled_from(CORRUPTIONS),
    ),
    min_size=1,
    max_size=12,
)


def make_bytes(code: str, category: str, corruption: str, n: int) -> bytes:
    raw = job(code, category, n)
    return {
        "none": raw,
        "upper_ext": raw,
        "bom": b"\xef\xbb\xbf" + raw,
        "truncate": raw[: len(raw) // 2],
        "empty": b"",
        "latin1": raw.replace(b"campaign", b"campa\xefgn"),
        "array": b"[" + raw + b"]",
        "nodetails": json.dumps({"JobSpecification": {"Details": {"ClientCode": code}}}).encode(),
        "nocategory": json.dumps({"JobSpecification": {"JobDetails": {"ClientCode": code}}}).encode(),
        "deep": b"[" * 50_000,
    }[corruption]


def all_files(top: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirnames, filenames in os.walk(top):
        for n in filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, top)] = b"<link>" if os.path.islink(p) else Path(p).read_bytes()
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=inputs)
def test_any_mix_is_archived_or_failed_exactly_once_and_stays_in_root(spec):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, outside = tmp / "root", tmp / "outside"
        (root / "JSON").mkdir(parents=True)
        outside.mkdir()
        config = build({"workers": 4}, "test", root=root)
        dropped = {}
        for n, (location, code, category, corruption) in enumerate(spec):
            code = str(outside / "x") if code == "ABSOLUTE" else code
            name = f"f{n}.JSON" if corruption == "upper_ext" else f"f{n}.json"
            data = make_bytes(code, category, corruption, n)
            folder = root / "JSON" / location if location else root / "JSON"
            folder.mkdir(exist_ok=True)
            (folder / name).write_bytes(data)
            good = (
                corruption in GOOD_CORRUPTIONS
                and code in SAFE_CODES
                and (location is None or location.lower() == code.lower())
            )
            dropped[name] = (location, code, data, good)

        summary = run_once(config)

        assert summary.archived + summary.failed == len(spec)
        assert summary.pending == 0
        assert all_files(root / "JSON") == {}
        everything = all_files(root)
        archive_folders: dict[str, str] = {}
        hot_folders = {location.casefold() for location, *_ in spec if location}
        for name, (location, code, data, good) in dropped.items():
            archived = [p for p in everything if p.startswith("JSON_STORE/") and os.path.basename(p) == name]
            failed = [p for p in everything if p.startswith("JSON_FAILED/") and p.endswith("_" + name)]
            if good:
                # One archive folder per client whatever the case it comes in: an existing folder's
                # spelling, else the ClientCode in upper case.
                (client_folder,) = {os.path.dirname(p) for p in archived}
                assert client_folder.casefold() == f"JSON_STORE/{location or code}".casefold(), everything.keys()
                assert client_folder == archive_folders.setdefault(code.casefold(), client_folder)
                assert location is not None or client_folder == client_folder.upper() or code.casefold() in hot_folders
                assert failed == []
                assert everything[archived[0]] == data
            else:
                assert archived == []
                assert len(failed) == 1, (name, failed)
                assert Path(failed[0]).parent == Path("JSON_FAILED") / (location or "_unknown")
                assert everything[failed[0]] == data
                assert failed[0] + ".reason.txt" in everything
            # every copy anywhere (archive, routes, failed) holds the input's exact bytes
            for path, content in everything.items():
                if os.path.basename(path) == name or path.endswith("_" + name):
                    assert content == data
        assert summary.archived == sum(g for *_, g in dropped.values())
        assert sorted(os.listdir(tmp)) == ["outside", "root"]
        assert os.listdir(outside) == []
        assert not any(p.endswith(".jwtmp") or "/." in "/" + p for p in everything)
