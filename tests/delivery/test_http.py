"""A copy sent to an http(s) endpoint: the request it makes (key, headers, TLS) and what each answer means,
against a real endpoint on loopback."""

from __future__ import annotations

import email.utils
import socket

import pytest

from http_endpoint import Fault, http_endpoint
from json_workflow.delivery.http import HttpEndpoint, decide, seconds_after
from json_workflow.delivery.stages import copy_key as idempotency_key
from json_workflow.routing.rules import Rule


def rule(url: str, **options) -> Rule:
    return Rule(name="Make hook", when={"ClientCode": "ACME"}, destination=url, **options)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_answer_means_sent(status):
    assert decide(status, b"", None, 0.0).sent


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_the_endpoints_trouble_means_the_file_waits(status):
    answer = decide(status, b"busy", "7", 0.0)
    assert (answer.sent, answer.retry, answer.after, answer.reason) == (False, True, 7.0, f"HTTP {status}: busy")


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 413, 422])
def test_any_other_answer_fails_the_file_with_the_status_and_the_start_of_the_body(status):
    answer = decide(status, b'{"error": "no such hook"}\x1b[31m' + b"x" * 500, None, 0.0)
    assert not answer.sent and not answer.retry
    assert answer.reason == f'HTTP {status}: {{"error": "no such hook"}}\\x1b[31m' + "x" * 170


def test_retry_after_is_read_as_seconds_or_as_a_date():
    assert seconds_after("120", 0.0) == 120.0
    assert seconds_after(email.utils.formatdate(1_000_090, usegmt=True), 1_000_000.0) == 90.0
    assert seconds_after(email.utils.formatdate(999_000, usegmt=True), 1_000_000.0) == 0.0
    assert seconds_after("soon", 0.0) is None and seconds_after(None, 0.0) is None


def test_the_key_is_one_per_version_of_a_file_and_rule():
    key = idempotency_key("r", "ACME", "j.json", "d1", 5)
    assert key == idempotency_key("r", "ACME", "j.json", "d1", 5) and len(key) == 32
    others = [("r2", "ACME", "j.json", "d1", 5), ("r", "ACME", "j.json", "d2", 5), ("r", "ACME", "j.json", "d1", 6),
              ("r", "OTHER", "j.json", "d1", 5), ("r", "ACME", "k.json", "d1", 5)]  # fmt: skip
    assert len({idempotency_key(*o) for o in others} | {key}) == 6


def test_a_request_carries_the_bytes_the_key_the_token_and_what_it_is(tmp_path):
    with http_endpoint(tmp_path) as endpoint:
        sender = HttpEndpoint(
            rule(endpoint.url + "/in", method="PUT", headers={"X-Studio": "north"}, ca_file=str(endpoint.ca_file)),
            token="t0ken",
        )
        answer = sender.send(endpoint.url + "/in/ACME?sig=1", b'{"a": 1}', "k" * 32, "ACME", "Job é 1.json")
        again = sender.send(endpoint.url + "/in/ACME?sig=1", b"{}", "k2", "ACME", "j.json")
        sender.close()
    assert answer.sent and answer.status == 200 and again.sent
    first, second = endpoint.requests
    assert (first.method, first.path, first.body) == ("PUT", "/in/ACME?sig=1", b'{"a": 1}')
    assert first.headers["Idempotency-Key"] == '"' + "k" * 32 + '"'
    assert first.headers["Authorization"] == "Bearer t0ken"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Studio"] == "north"
    assert first.headers["X-JSON-Workflow-File"] == "Job %C3%A9 1.json"
    assert (first.headers["X-JSON-Workflow-Client"], first.headers["X-JSON-Workflow-Rule"]) == ("ACME", "Make hook")
    assert first.peer == second.peer  # the connection is reused


def test_an_untrusted_certificate_is_never_accepted(tmp_path):
    with http_endpoint(tmp_path) as endpoint:
        answer = HttpEndpoint(rule(endpoint.url), None).send(endpoint.url + "/in", b"{}", "k", "A", "j.json")
    assert not answer.sent and answer.retry and "CERTIFICATE_VERIFY_FAILED" in answer.reason
    assert endpoint.requests == []


@pytest.mark.parametrize(
    "fault, status, said",
    [
        (Fault(500, body=b"oops"), 500, "HTTP 500: oops"),
        (Fault(503, {"Retry-After": "30"}), 503, "HTTP 503"),
        (Fault(delay=1.5), None, "no answer within 0.5s"),
        (Fault(reset=True), None, "Error"),
    ],
)
def test_a_fault_of_the_endpoint_means_the_file_waits(tmp_path, fault, status, said):
    with http_endpoint(tmp_path) as endpoint:
        endpoint.faults.append(fault)
        sender = HttpEndpoint(rule(endpoint.url, ca_file=str(endpoint.ca_file), timeout=0.5), None)
        answer = sender.send(endpoint.url + "/in?sig=s3cret", b"{}" * 50_000, "k", "A", "j.json")
        assert sender.send(endpoint.url + "/in", b"{}", "k2", "A", "j.json").sent  # and it works again at once
    assert (answer.sent, answer.retry, answer.status) == (False, True, status)
    assert said in answer.reason and "s3cret" not in answer.reason
    assert answer.after == (30.0 if status == 503 else None)


def test_a_refusal_fails_the_file(tmp_path):
    with http_endpoint(tmp_path) as endpoint:
        endpoint.faults.append(Fault(404, body=b"no such hook"))
        answer = HttpEndpoint(rule(endpoint.url, ca_file=str(endpoint.ca_file)), None).send(
            endpoint.url + "/in", b"{}", "k", "A", "j.json"
        )
    assert (answer.sent, answer.retry, answer.reason) == (False, False, "HTTP 404: no such hook")


def test_a_dead_endpoint_means_the_file_waits():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once it is closed
    answer = HttpEndpoint(rule(f"http://127.0.0.1:{port}/in"), None).send(
        f"http://127.0.0.1:{port}/in", b"{}", "k", "A", "j.json"
    )
    assert answer.retry and "refused" in answer.reason.lower()
