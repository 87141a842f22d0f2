"""Copies uploaded to a real SFTP server (Debian's sshd on loopback): a hidden temporary renamed into place,
never over other bytes, never to a host whose key is unknown; and through the pipeline, exactly once."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import drop, make_config, run
from json_workflow.delivery.sftp import SftpEndpoint
from json_workflow.routing.rules import Rule
from json_workflow.samples import job
from sftp_server import NOBODY, sftp_server


@pytest.fixture(scope="module")
def server():
    with sftp_server() as server:
        yield server


@pytest.fixture
def uploads(server):
    """The server's upload folder, emptied for each test."""
    subprocess.run(["find", str(server.uploads), "-mindepth", "1", "-delete"], check=True)
    return server.uploads


def route(server, **options) -> dict:
    options = {"key_file": str(server.key_file), "known_hosts": str(server.known_hosts), "timeout": 5, **options}
    return {"name": "Partner", "when": {"ClientCode": "ACME"}, "destination": server.url + "/{ClientCode}", **options}


def rule(server, **options) -> Rule:
    return Rule(**route(server, **options))


def test_an_upload_lands_whole_under_its_name_and_again_is_no_change(server, uploads):
    endpoint = SftpEndpoint(rule(server), None)
    url = server.url + "/ACME/2026"
    assert endpoint.send(url, b'{"a": 1}', "k1", "ACME", "j.json").sent
    assert endpoint.send(url, b'{"a": 1}', "k1", "ACME", "j.json").sent  # its acknowledgement was lost: sent
    assert server.files() == {"ACME/2026/j.json": b'{"a": 1}'}
    assert os.stat(uploads / "ACME" / "2026" / "j.json").st_uid == NOBODY
    endpoint.close()


def test_an_interrupted_upload_is_finished_by_the_next_attempt(server, uploads):
    (uploads / "ACME").mkdir()
    half = uploads / "ACME" / ".j.json.k1.part"
    half.write_bytes(b'{"a"')  # what a crash mid-upload leaves
    os.chown(uploads / "ACME", NOBODY, NOBODY)
    os.chown(half, NOBODY, NOBODY)
    assert SftpEndpoint(rule(server), None).send(server.url + "/ACME", b'{"a": 1}', "k1", "ACME", "j.json").sent
    assert server.files() == {"ACME/j.json": b'{"a": 1}'}


def test_other_bytes_there_are_never_overwritten(server, uploads):
    endpoint = SftpEndpoint(rule(server), None)
    assert endpoint.send(server.url + "/ACME", b"old", "k1", "ACME", "j.json").sent
    answer = endpoint.send(server.url + "/ACME", b"new", "k2", "ACME", "j.json")
    assert (answer.sent, answer.retry) == (False, False)
    assert "is there with other bytes on the server; it is never overwritten" in answer.reason
    assert server.files() == {"ACME/j.json": b"old"}


def test_an_unknown_or_changed_host_key_is_never_accepted(server, uploads, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "wrong_hosts"
    wrong.write_text(f"[127.0.0.1]:{server.port} {' '.join((tmp_path / 'other.pub').read_text().split()[:2])}\n")
    empty = tmp_path / "empty_hosts"
    empty.write_text("")
    for known, said in ((wrong, "is not the one known_hosts has"), (empty, "an unknown host key is never accepted")):
        answer = SftpEndpoint(rule(server, known_hosts=str(known)), None).send(
            server.url + "/ACME", b"x", "k", "ACME", "j.json"
        )
        assert answer.retry and said in answer.reason, answer.reason
    assert server.files() == {}


def test_a_stopped_server_holds_the_file_and_its_restart_lets_it_go(server, uploads):
    endpoint = SftpEndpoint(rule(server, timeout=2), None)
    assert endpoint.send(server.url + "/ACME", b"1", "k1", "ACME", "a.json").sent
    server.stop()
    try:
        answer = endpoint.send(server.url + "/ACME", b"2", "k2", "ACME", "b.json")
        assert answer.retry and not answer.sent, answer
    finally:
        server.start()
    assert endpoint.send(server.url + "/ACME", b"2", "k2", "ACME", "b.json").sent
    assert server.files() == {"ACME/a.json": b"1", "ACME/b.json": b"2"}


def test_the_pipeline_uploads_each_file_once_and_fails_one_that_would_overwrite(server, uploads, root):
    config = make_config(root, routes=[route(server)])
    files = {f"j{i}.json": job("ACME", "PRODUCTION", i) for i in range(3)}
    for name, data in files.items():
        drop(root, "ACME", name, data)
    assert run(config).archived == 3
    assert server.files() == {f"ACME/{name}": data for name, data in files.items()}
    drop(root, "ACME", "j0.json", job("ACME", "PRODUCTION", 99))  # written again while the first is there
    summary = run(config)
    assert summary.failed == 1
    (reason,) = (root / "JSON_FAILED" / "ACME").glob("*.reason.txt")
    assert "is there with other bytes on the server; it is never overwritten" in reason.read_text()
    assert server.files()["ACME/j0.json"] == files["j0.json"]


def test_a_full_disk_holds_the_file_and_leaves_no_half_upload(server, uploads):
    full = uploads / "full"
    full.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=16k,uid={NOBODY},gid={NOBODY}", "tmpfs", str(full)], check=True
    )
    try:
        answer = SftpEndpoint(rule(server), None).send(server.url + "/full", b"x" * 100_000, "k", "ACME", "j.json")
        assert answer.retry and not answer.sent and "a full disk or a quota?" in answer.reason, answer
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)], check=True)
