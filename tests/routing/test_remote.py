"""URL destinations as written: checked at load (no secret in the file), shown without query values, filled
in per job (percent-encoded in an http(s) path), and their options checked where they are used."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trustme

from conftest import cli
from json_workflow.config import build
from json_workflow.delivery.endpoints import problems
from json_workflow.errors import ConfigError, Rejected
from json_workflow.parse import parse_job
from json_workflow.samples import job as sample


def job(client: str, number: object = 1) -> bytes:
    return sample(client, "PRODUCTION", number)  # type: ignore[arg-type]


def config(destination: str, **options):
    rule = {"name": "out", "when": {"ClientCode": "ACME"}, "destination": destination, **options}
    return build({"routes": [rule]}, "c.toml", root="/r", base=Path("/etc/jw"))


def refused(destination: str, **options) -> str:
    with pytest.raises(ConfigError) as e:
        config(destination, **options)
    return str(e.value)


@pytest.mark.parametrize(
    "destination, said",
    [
        ("https://bob:hunter2@example.com/in", "routes[0].destination: a password in the URL"),
        ("sftp://bob:hunter2@example.com/in", "in the rule's password_env instead"),
        ("https://bob@example.com/in", "expected no user in an http(s) URL"),
        ("https://{ClientCode}.example.com/in", "placeholders only in the path"),
        ("https://example.com/in?to={ClientCode}", "placeholders only in the path, not in the ?query"),
        ("https://example.com/in#top", "no #fragment"),
        ("https://example.com:70000/in", "Port out of range"),
        ("https://example.com/a/../b", 'no ".." in the path'),
        ("https://exa mple.com/x", "'exa mple.com' is not a host name or an IP address"),
        ("ftp://example.com/in", "a URL starting https://, http:// or sftp://, not ftp://"),
        ("sftp://example.com/in", "expected the user to log in as: sftp://USER@HOST[:PORT]/PATH"),
        ("sftp://bob@example.com/", "expected the folder to upload into"),
        ("sftp://bob@example.com/in?x=1", "no ?query in an sftp:// URL"),
        ("https://example.com/in/{Nope}", "unknown placeholder {Nope}"),
    ],
)
def test_a_bad_url_is_refused_with_its_key_and_never_echoed(destination, said):
    text = refused(destination)
    assert said in text and "routes[0]" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    "destination, option, value, said",
    [
        ("OUT/x", "token_env", "T", "routes[0].token_env: applies only to an https:// or http:// destination, and "
         "this rule's is a folder"),
        ("OUT/x", "timeout", 5, "routes[0].timeout: applies only to a URL destination"),
        ("https://h/x", "key_file", "/k", "routes[0].key_file: applies only to an sftp:// destination, and this "
         "rule's is https://"),
        ("sftp://u@h/x", "headers", {"X-A": "1"}, "routes[0].headers: applies only to an https:// or http://"),
        ("https://h/x", "headers", {"Authorization": "Bearer x"}, "the bearer token comes from token_env"),
        ("https://h/x", "headers", {"Idempotency-Key": "k"}, "Idempotency-Key is set by json-workflow"),
        ("https://h/x", "headers", {"X-A": "1\r\nX-B: 2"}, "control or line-breaking characters"),
        ("https://h/x", "method", "GET", "routes[0].method"),
        ("https://h/x", "concurrency", 0, "routes[0].concurrency"),
    ],
)  # fmt: skip
def test_an_option_that_does_not_fit_its_destination_is_refused(destination, option, value, said):
    assert said in refused(destination, **{option: value})


def test_a_url_is_shown_without_its_query_values_and_filled_in_percent_encoded():
    cfg = config("https://hook.example.com/in/{JobNumber}?sig=s3cret&v=2", token_env="T", on_missing="skip")
    (destination,) = [d for d in cfg.router().plan(parse_job(job("ACME", number="J 1é&x"), "ACME")) if d.remote]
    assert destination.path == "https://hook.example.com/in/J%201%C3%A9%26x?sig=s3cret&v=2"
    assert destination.shown == "https://hook.example.com/in/J%201%C3%A9%26x?sig=...&v=..."
    assert destination.reasons == ("out",)
    assert cfg.routes[0].endpoint.shown() == "https://hook.example.com/in/{JobNumber}?sig=...&v=..."


@pytest.mark.parametrize("number", ["a/b", "..", ".hidden", "", "x\u200by"])
def test_a_value_that_is_no_safe_name_fails_the_job_before_anything_is_sent(number):
    for destination in ("https://h/in/{JobNumber}", "sftp://u@h/in/{JobNumber}"):
        with pytest.raises(Rejected, match="not a safe folder name"):
            config(destination).router().plan(parse_job(job("ACME", number=number), "ACME"))


def test_each_rule_sends_its_own_copy_after_the_folders():
    rules = [
        {"name": "a", "when": {"ClientCode": "ACME"}, "destination": "https://h/in"},
        {"name": "b", "when": {"ClientCode": "ACME"}, "destination": "https://h/in"},
        {"name": "c", "when": {"ClientCode": "ACME"}, "destination": "OUT"},
    ]
    plan = build({"routes": rules}, "c.toml", root="/r").router().plan(parse_job(job("ACME"), "ACME"))
    assert [(d.reasons, d.remote is not None) for d in plan] == [
        (("archive",), False), (("c",), False), (("a",), True), (("b",), True)
    ]  # fmt: skip


def test_files_a_rule_names_are_under_the_configuration_files_folder():
    rule = config("sftp://u@h/in", key_file="keys/id", known_hosts="/abs/known_hosts").routes[0]
    assert (rule.key_file, rule.known_hosts) == ("/etc/jw/keys/id", "/abs/known_hosts")
    assert config("sftp://u@h/in").routes[0].known_hosts == os.path.expanduser("~/.ssh/known_hosts")


def test_secrets_and_files_are_checked_where_they_are_used(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keys / "id"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-a", "1", "-N", "pass", "-f", keys / "locked"], check=True)
    (keys / "known_hosts").write_text(f"[127.0.0.1]:2222 {(keys / 'id.pub').read_text()}")
    (keys / "ca.pem").write_text("not a certificate")
    trustme.CA().cert_pem.write_to_path(str(keys / "good-ca.pem"))
    monkeypatch.delenv("JW_T", raising=False)
    monkeypatch.delenv("JW_P", raising=False)

    def found(destination, **options):
        rule = {"name": "r", "when": {"ClientCode": "A"}, "destination": destination, **options}
        return problems(build({"routes": [rule]}, "c.toml", root="/r", base=keys).routes)

    assert found("https://h/in", token_env="JW_T") == [
        "routes[0].token_env: the environment variable JW_T is not set or empty (it holds the bearer token for "
        "https://h/in; set it in the service's environment)"
    ]
    assert "ca.pem is not a readable PEM file" in found("https://h/in", ca_file="ca.pem")[0]
    assert "missing.pem does not exist" in found("https://h/in", ca_file="missing.pem")[0]
    assert found("https://h/in", ca_file="good-ca.pem") == []
    sftp = "sftp://u@127.0.0.1:2222/in"
    assert found(sftp, key_file="id", known_hosts="known_hosts") == []
    assert "expected key_file or password_env" in found(sftp, known_hosts="known_hosts")[0]
    assert "has no host key for [127.0.0.1]:2223" in found(sftp.replace("2222", "2223"), key_file="id",
                                                           known_hosts="known_hosts")[0]  # fmt: skip
    assert "is encrypted: its passphrase is read from password_env" in found(sftp, key_file="locked",
                                                                             known_hosts="known_hosts")[0]  # fmt: skip
    monkeypatch.setenv("JW_P", "pass")
    assert found(sftp, key_file="locked", password_env="JW_P", known_hosts="known_hosts") == []
    assert "no-such does not exist" in found(sftp, password_env="JW_P", known_hosts="no-such")[0]


def test_check_config_and_explain_show_urls_without_secrets(tmp_path):
    (tmp_path / "root" / "JSON" / "ACME").mkdir(parents=True)
    toml = tmp_path / "c.toml"
    toml.write_text(
        f'root = "{tmp_path / "root"}"\n[[routes]]\nname = "Make"\nwhen = {{ ClientCode = "ACME" }}\n'
        'destination = "https://hook.example.com/in/{ClientCode}?sig=s3cret"\ntoken_env = "JW_TOKEN"\n'
    )
    missing = cli("check-config", "--config", str(toml))
    assert missing.returncode == 2 and "routes[0].token_env: the environment variable JW_TOKEN" in missing.stderr
    shown = cli("check-config", "--config", str(toml), env={"JW_TOKEN": "t0ken"})
    assert shown.returncode == 0, shown.stderr
    assert (
        "-> https://hook.example.com/in/{ClientCode}?sig=...  (POST, token from JW_TOKEN; timeout 30s" in shown.stdout
    )
    dropped = tmp_path / "root" / "JSON" / "ACME" / "j.json"
    dropped.write_bytes(job("ACME"))
    explained = cli("explain", "--config", str(toml), str(dropped), env={"JW_TOKEN": "t0ken"})
    assert '-> https://hook.example.com/in/ACME?sig=...  (rule "Make")' in explained.stdout, explained.stdout
    for out in (shown.stdout + shown.stderr, explained.stdout + explained.stderr):
        assert "s3cret" not in out and "t0ken" not in out
