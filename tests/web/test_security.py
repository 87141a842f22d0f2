"""Who may use the dashboard: Host, token, Origin, CSRF; retry never takes a path from the request."""

from __future__ import annotations

import pytest

from conftest import Service, cli, drop_atomically, wait_for, write_config
from json_workflow.store import SqliteStore
from web_client import csrf_of, post, request

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def service(root, tmp_path):
    """A running service with one failed file (LOREAL/bad.json)."""
    config = write_config(tmp_path / "c.toml", root)
    running = Service(root, config).start()
    drop_atomically(root, "LOREAL", "bad.json", b"{")
    wait_for(lambda: list((root / "JSON_FAILED").glob("LOREAL/*_bad.json")), what="the failed file")
    yield running
    running.stop()


@pytest.fixture
def guarded(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    running = Service(root, config, env={"JSON_WORKFLOW_HTTP_TOKEN": TOKEN}).start()
    yield running
    running.stop()


def failed_row(root) -> int:
    store = SqliteStore(root / "JSON_PARSER_STATE")
    try:
        return wait_for(lambda: store.failed_files(), what="the failed row")[0].id
    finally:
        store.close()


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(service, root):
    row = failed_row(root)
    reply = post(service.url, "/failed/retry", {"file": row})
    assert reply.status == 403 and "CSRF" in reply.body
    assert list((root / "JSON_FAILED").glob("LOREAL/*_bad.json"))
    assert not (root / "JSON/LOREAL/bad.json").exists()


def test_a_post_from_another_origin_is_refused_even_with_the_token(service, root):
    csrf = csrf_of(request(service.url + "failed").body)
    row = failed_row(root)
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {}):
        reply = request(service.url + "failed/retry", "POST", {"csrf": csrf, "file": row}, headers)
        assert reply.status == 403, headers
    assert list((root / "JSON_FAILED").glob("LOREAL/*_bad.json"))


def test_a_post_with_csrf_and_origin_retries_the_file(service, root):
    csrf = csrf_of(request(service.url + "failed").body)
    reply = post(service.url, "/failed/retry", {"csrf": csrf, "file": failed_row(root)})
    assert reply.status == 303 and reply.headers["location"].startswith("/failed?result=")
    page = request(service.url + reply.headers["location"].lstrip("/")).body
    assert "Retried 1 file" in page
    # Back in the hot folder, it fails again (it is still broken): a second failed file, no loss.
    wait_for(lambda: len(list((root / "JSON_FAILED").glob("LOREAL/*bad.json"))) == 1, what="it failed again")


def test_a_forged_path_in_a_request_is_never_acted_on(service, root, outside):
    victim = outside / "20240101_000000_x.json"
    victim.write_bytes(b"keep")
    csrf = csrf_of(request(service.url + "failed").body)
    forged = {"csrf": csrf, "file": [str(victim), "../../outside/20240101_000000_x.json"], "path": str(victim)}
    reply = post(service.url, "/failed/retry", forged)
    assert reply.status == 303
    assert "Retried 0 files" in request(service.url + reply.headers["location"].lstrip("/")).body
    assert victim.read_bytes() == b"keep"
    assert list((root / "JSON_FAILED").glob("LOREAL/*_bad.json"))  # nor the failed file it did not name
    for path in ("reports/..%2F..%2FJSON_PARSER_STATE%2Fjournal.sqlite3", "reports/x.html", "failed/999999"):
        assert request(service.url + path).status == 404, path


def test_without_a_token_the_login_form_leads_back_to_the_overview(service):
    reply = request(service.url + "login")
    assert reply.status == 303 and reply.headers["location"] == "/"


def test_a_foreign_host_header_is_refused(service):
    assert request(service.url, headers={"Host": "attacker.example"}).status == 400
    assert request(service.url, headers={"Host": "attacker.example:8787"}).status == 400
    assert request(service.url + "metrics", headers={"Host": "localhost"}).status == 200


def test_with_a_token_every_request_needs_it(guarded):
    url = guarded.url
    assert request(url + "metrics").status == 401
    assert request(url + "metrics", headers={"Authorization": "Bearer wrong"}).status == 401
    assert request(url + "metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    browser = request(url + "failed", headers={"Accept": "text/html"})
    assert browser.status == 303 and browser.headers["location"] == "/login?next=/failed"


def test_the_login_form_sets_a_session_cookie_only_for_the_right_token(guarded):
    url = guarded.url
    csrf = csrf_of(request(url + "login").body)
    wrong = post(url, "/login", {"csrf": csrf, "token": "wrong", "next": "/failed"})
    assert wrong.status == 401 and "set-cookie" not in wrong.headers
    right = post(url, "/login", {"csrf": csrf, "token": TOKEN, "next": "/failed"})
    assert right.status == 303 and right.headers["location"] == "/failed"
    cookie = right.headers["set-cookie"].split(";")[0]
    assert TOKEN not in cookie and "HttpOnly" in right.headers["set-cookie"]
    assert request(url + "failed", headers={"Cookie": cookie}).status == 200
    assert request(url + "failed", headers={"Cookie": cookie + "x"}).status == 401
    away = post(url, "/login", {"csrf": csrf, "token": TOKEN, "next": "//evil.example/"})
    assert away.headers["location"] == "/"


def test_a_non_loopback_listen_without_a_token_is_a_configuration_error(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root, extra='[http]\nlisten = "0.0.0.0:0"\n')
    done = cli("run", "--config", str(config))
    assert done.returncode == 2
    assert "http.listen: 0.0.0.0:0 is not a loopback address" in done.stderr
    assert "JSON_WORKFLOW_HTTP_TOKEN" in done.stderr
    assert not (root / "JSON_PARSER_STATE").exists()  # refused before anything was touched
    checked = cli("check-config", "--config", str(config))  # it applies what run applies
    assert checked.returncode == 2 and "http.listen: 0.0.0.0:0 is not a loopback address" in checked.stderr
