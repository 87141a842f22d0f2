"""A copy sent to an http(s) endpoint: one request carrying the file's bytes and an Idempotency-Key, and
what its answer means (draft-ietf-httpapi-idempotency-key-header; the same key on every try of a copy)."""

from __future__ import annotations

import email.utils
import time
import urllib.parse

import urllib3

from json_workflow.delivery.model import Answer
from json_workflow.names import printable
from json_workflow.routing.rules import Rule

# How much of a refusal's body its reason quotes, and how much of any answer is read at most.
BODY_SHOWN = 200
BODY_READ = 64 * 1024
# Statuses that say the endpoint is in trouble, not the file: the file waits and is sent again.
RETRIED = frozenset({408, 425, 429})
# Headers naming what is sent, for the receiver's logs (values percent-encoded UTF-8).
FILE_HEADER, CLIENT_HEADER, RULE_HEADER = "X-JSON-Workflow-File", "X-JSON-Workflow-Client", "X-JSON-Workflow-Rule"


def decide(status: int, body: bytes, retry_after: str | None, now: float) -> Answer:
    """The meaning of an HTTP answer. Pure."""
    if 200 <= status < 300:
        return Answer(True, status)
    said = printable(body[:BODY_SHOWN].decode("utf-8", "replace")).strip()
    reason = f"HTTP {status}" + (f": {said}" if said else "")
    if status in RETRIED or status >= 500:
        return Answer(False, status, retry=True, reason=reason, after=seconds_after(retry_after, now))
    return Answer(False, status, reason=reason)


def seconds_after(value: str | None, now: float) -> float | None:
    """A Retry-After value (seconds, or an HTTP date) as seconds from `now`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now) if when.tzinfo is not None else None


class HttpEndpoint:
    """The connections of one http(s) rule: at most `concurrency` of them, reused; TLS always verified."""

    def __init__(self, rule: Rule, token: str | None):
        self.rule, self.token = rule, token
        timeout = urllib3.Timeout(connect=rule.timeout, read=rule.timeout, total=rule.timeout)
        self.pool = urllib3.PoolManager(
            maxsize=rule.concurrency,
            retries=False,  # a retry is the pipeline's, with the journal's key, after the file waited
            timeout=timeout,
            cert_reqs="CERT_REQUIRED",
            ca_certs=rule.ca_file,
        )

    def send(self, url: str, data: bytes, key: str, client: str, name: str) -> Answer:
        """One request with the file's bytes; never raises for the endpoint's faults (they are its answer)."""
        headers = {
            **self.rule.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": f'"{key}"',  # a Structured Field string (RFC 8941)
            FILE_HEADER: _header_value(name),
            CLIENT_HEADER: _header_value(client),
            RULE_HEADER: _header_value(self.rule.name),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.pool.request(
                self.rule.method, url, body=data, headers=headers, redirect=False, preload_content=False
            )
            whole = False
            try:
                body = response.read(BODY_READ)
                whole = not response.read(1)
            finally:  # a connection is reused only once its answer was read to the end
                response.release_conn() if whole else response.close()
        except urllib3.exceptions.HTTPError as e:
            return Answer(False, retry=True, reason=_failure(e, url, self.rule.timeout))
        return decide(response.status, body, response.headers.get("Retry-After"), time.time())

    def close(self) -> None:
        self.pool.clear()


def _header_value(text: str) -> str:
    return urllib.parse.quote(text, safe=" !#$&'()*+,/:;=?@[]~")


def _failure(error: Exception, url: str, timeout: float) -> str:
    """Why a request got no answer, without the URL's query (it may hold a signature)."""
    if isinstance(error, urllib3.exceptions.NewConnectionError):  # a subclass of the timeout's, oddly
        said = f"cannot connect: {error.__cause__ or error}"
    elif isinstance(error, urllib3.exceptions.ConnectTimeoutError):
        said = f"no connection within {timeout:g}s"
    elif isinstance(error, urllib3.exceptions.ReadTimeoutError):
        said = f"no answer within {timeout:g}s"
    else:
        cause = getattr(error, "reason", None) or error
        said = f"{type(cause).__name__}: {cause}"
    query = urllib.parse.urlsplit(url).query
    return printable(said.replace(query, "...") if query else said)
