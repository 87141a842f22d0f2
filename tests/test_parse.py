"""parse.parse_job and parse.is_safe_folder_name: bytes to a Job, or Rejected with a precise reason."""

from __future__ import annotations

import json

import pytest

from json_workflow.errors import Rejected
from json_workflow.parse import is_safe_folder_name, parse_job
from json_workflow.samples import job

BOM = b"\xef\xbb\xbf"


def doc(details) -> bytes:
    return json.dumps({"JobSpecification": {"JobDetails": details}}).encode()


def rejected(raw: bytes, folder: str | None = "RANK") -> Rejected:
    with pytest.raises(Rejected) as e:
        parse_job(raw, folder)
    return e.value


def test_valid_job_gives_its_fields():
    j = parse_job(job("RANK", "PRODUCTION", 7, title="T"), "RANK")
    assert (j.client, j.category, j.studio, j.title) == ("RANK", "PRODUCTION", "RANK_STUDIO", "T")
    assert j.details["JobNumber"] == 7


def test_optional_fields_may_be_absent():
    j = parse_job(doc({"ClientCode": "RANK", "JobCategory": "X"}), "RANK")
    assert j.studio is None and j.title is None


def test_client_is_the_folder_name_when_code_differs_only_in_case():
    j = parse_job(job("rank", "X", 1), "RANK")
    assert j.client == "RANK"


def test_top_level_file_takes_its_client_code():
    assert parse_job(job("LOREAL", "X", 1), None).client == "LOREAL"


def test_utf8_bom_is_accepted():
    assert parse_job(BOM + job("RANK", "X", 1), "RANK").client == "RANK"


def test_non_ascii_utf8_is_accepted():
    assert parse_job(job("RANK", "X", 1, title="Café ünïcödé"), "RANK").title == "Café ünïcödé"


@pytest.mark.parametrize(
    "raw, stage, words",
    [
        (b'{"JobSpecification": ', "parse", "invalid JSON"),
        (b"", "parse", "empty file"),
        (b"  \n\t ", "parse", "empty file"),
        (BOM, "parse", "empty file"),
        (job("RANK", "X", 1).replace(b"campaign", b"campa\xe9gn"), "parse", "not UTF-8"),
        ("\ufeff".encode("utf-16") + job("RANK", "X", 1).decode().encode("utf-16-le"), "parse", "not UTF-8"),
        (b"[" * 100_000, "parse", "nesting too deep"),
        (b'{"a":' * 100_000, "parse", "nesting too deep"),
        (b"[1, 2]", "validate", "top level is a JSON array"),
        (b'"RANK"', "validate", "top level is a JSON"),
        (b"42", "validate", "top level"),
        (b"null", "validate", "top level"),
        (b"{}", "validate", "no JobSpecification.JobDetails object"),
        (b'{"JobSpecification": []}', "validate", "no JobSpecification.JobDetails object"),
        (b'{"JobSpecification": {"JobDetails": "RANK"}}', "validate", "no JobSpecification.JobDetails object"),
        (b'{"JobSpecification": {"JobDetails": null}}', "validate", "no JobSpecification.JobDetails object"),
        (doc({"JobCategory": "X"}), "validate", "JobDetails.ClientCode is missing"),
        (doc({"ClientCode": 5, "JobCategory": "X"}), "validate", "JobDetails.ClientCode must be a non-empty string"),
        (doc({"ClientCode": None, "JobCategory": "X"}), "validate", "JobDetails.ClientCode must be a non-empty string"),
        (
            doc({"ClientCode": ["RANK"], "JobCategory": "X"}),
            "validate",
            "JobDetails.ClientCode must be a non-empty string",
        ),
        (doc({"ClientCode": "", "JobCategory": "X"}), "validate", "JobDetails.ClientCode must be a non-empty string"),
        (doc({"ClientCode": "  ", "JobCategory": "X"}), "validate", "JobDetails.ClientCode must be a non-empty string"),
        (doc({"ClientCode": "RANK"}), "validate", "JobDetails.JobCategory is missing"),
        (
            doc({"ClientCode": "RANK", "JobCategory": ""}),
            "validate",
            "JobDetails.JobCategory must be a non-empty string",
        ),
        (
            doc({"ClientCode": "RANK", "JobCategory": 3}),
            "validate",
            "JobDetails.JobCategory must be a non-empty string",
        ),
        (
            doc({"ClientCode": "RANK", "JobCategory": {}}),
            "validate",
            "JobDetails.JobCategory must be a non-empty string",
        ),
        (job("LOREAL", "X", 1), "validate", "does not match its client folder"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_is_rejected_with_stage_and_reason(raw, stage, words):
    r = rejected(raw, "RANK")
    assert r.stage == stage
    assert words in r.reason


def test_top_level_string_reason_reads_well():
    assert rejected(b'"RANK"').reason == "top level is a JSON string, expected an object"


@pytest.mark.parametrize(
    "code", ["../x", "a/b", "/abs", "..", ".", ".hidden", "a\\b", "x\x00y", "tab\there", " RANK", "RANK ", "A" * 101]
)
@pytest.mark.parametrize("folder", [None, "RANK"])
def test_unsafe_client_code_is_rejected(code, folder):
    r = rejected(job(code, "X", 1), folder)
    assert r.stage == "validate"
    assert "not a safe folder name" in r.reason


@pytest.mark.parametrize("name", ["RANK", "3M", "L'OREAL", "A B", "x..y", "_unknown", "Ünïcode", "A" * 100])
def test_safe_folder_names(name):
    assert is_safe_folder_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/abs", "a\\b", ".git", "x\ny", " x", "x ", "A" * 101])
def test_unsafe_folder_names(name):
    assert not is_safe_folder_name(name)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    raw = doc({"ClientCode": "RANK", "JobCategory": "X"}).replace(
        b'"X"}', b'"X", "Quantity": ' + constant.encode() + b"}"
    )
    r = rejected(raw)
    assert (r.stage, r.reason) == ("parse", f"invalid JSON: {constant} is not a JSON number")


@pytest.mark.parametrize("where", ["JobDetails", "elsewhere"])
def test_a_number_over_pythons_digit_limit_is_rejected_not_raised(where):
    number = b"9" * 5000
    details = doc({"ClientCode": "RANK", "JobCategory": "X"})
    raw = (
        details.replace(b'"X"}', b'"X", "Quantity": ' + number + b"}")
        if where == "JobDetails"
        else b'{"Big": ' + number + b", " + details[1:]
    )
    r = rejected(raw)
    assert r.stage == "parse" and r.reason.startswith("invalid JSON: Exceeds the limit (4300 digits)")


@pytest.mark.parametrize("field", ["ClientCode", "JobCategory", "StudioCode", "Title"])
@pytest.mark.parametrize("surrogate", ["\\ud800", "\\udfff", "x\\udc80"])
def test_a_lone_surrogate_in_a_field_we_keep_is_rejected(field, surrogate):
    # json.loads accepts "\ud800"; no file name, log line or database takes the result.
    details = {"ClientCode": "RANK", "JobCategory": "X", field: "@"}
    raw = json.dumps({"JobSpecification": {"JobDetails": details}}).replace('"@"', f'"{surrogate}"').encode()
    r = rejected(raw, None)
    assert r.stage == "validate"
    assert f"JobDetails.{field} is not valid Unicode text" in r.reason
    r.reason.encode("utf-8")


@pytest.mark.parametrize(
    "code", ["RA\u200bNK", "\u202eKNAR", "RANK\ufeff", "RA\u00a0NK", "RA\u2028NK", "RA\U000e0041NK"]
)
def test_invisible_characters_make_a_client_code_unsafe(code):
    assert not is_safe_folder_name(code)
    r = rejected(doc({"ClientCode": code, "JobCategory": "X"}), None)
    assert "is not a safe folder name" in r.reason


@pytest.mark.parametrize("keep_document", [False, True])
@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**40])
def test_integers_past_64_bits_are_read_exactly(big, keep_document):
    # orjson, the fast path, reads them as floats: the history and the rules must see the number written.
    raw = doc({"ClientCode": "RANK", "JobCategory": "X", "JobNumber": big, "Quantity": big})
    j = parse_job(raw, "RANK", keep_document)
    assert j.number == str(big) and j.details["Quantity"] == big and type(j.details["Quantity"]) is int


def test_what_the_fast_decoder_refuses_but_json_allows_is_read_as_before():
    # An escaped lone surrogate outside the fields we keep, a float past the double range: json accepts both.
    details = doc({"ClientCode": "RANK", "JobCategory": "X", "Note": "@"}).replace(b'"@"', b'"\\ud800"')
    assert parse_job(details, "RANK").details["Note"] == "\ud800"
    huge = doc({"ClientCode": "RANK", "JobCategory": "X"}).replace(b'"X"}', b'"X", "Quantity": 1e400}')
    assert parse_job(huge, "RANK").details["Quantity"] == float("inf")
