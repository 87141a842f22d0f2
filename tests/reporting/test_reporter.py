"""The daily report and alerts through a real SMTP server, with the time injected, never waited for."""

from __future__ import annotations

import datetime
import logging
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from conftest import Service, cli, drop, make_config, wait_for
from json_workflow.reporting.reporter import Reporter
from json_workflow.run import run_once
from json_workflow.samples import job
from smtp_server import PASSWORD, email_settings, smtp_server

UTC = ZoneInfo("UTC")


def at(day: datetime.date, hour: int = 0, minute: int = 0, zone=UTC) -> float:
    return datetime.datetime.combine(day, datetime.time(hour, minute), zone).timestamp()


D1 = datetime.date(2026, 3, 10)
D2, D3, D4 = (D1 + datetime.timedelta(days=n) for n in (1, 2, 3))


@pytest.fixture(autouse=True)
def password(monkeypatch):
    monkeypatch.setenv("JW_TEST_SMTP_PASSWORD", PASSWORD)


@pytest.fixture
def server():
    with smtp_server() as (port, inbox):
        yield port, inbox


def day_of_work(root, when: float) -> None:
    """What a day brings: good files for three clients, a Celtra job and a bad file."""
    drop(root, "RANK", "5903771.json", job("RANK", "CELTRA", 1))
    drop(root, "LOREAL", "campaign_001.json", job("LOREAL", "CAMPAIGN", 2))
    drop(root, "BISSELL", "order_5555.json", job("BISSELL", "ORDER", 3))
    drop(root, "OLIVER", "broken.json", b'{"JobSpecification": ')
    run_once(make_config(root), clock=lambda: when)


def reporter(root, port: int | None = None, **email) -> Reporter:
    """A Reporter as the service makes one: after the journal exists (an empty run creates it)."""
    settings = {"email": email_settings(port, **email)} if port else {"email": email}
    config = make_config(root, **settings)
    if not config.state.exists():
        run_once(config)
    return Reporter(config)


def subjects(inbox) -> list[str]:
    return [m["Subject"] for m in inbox.messages]


def test_the_report_is_one_multipart_alternative_message_with_the_days_figures(root, server, caplog):
    caplog.set_level(logging.DEBUG)
    port, inbox = server
    day_of_work(root, at(D1, 14, 5))
    r = reporter(root, port)
    r.tick(at(D2, 0, 1))
    (msg,) = inbox.messages
    assert inbox.logins == ["postmaster"]  # STARTTLS, then AUTH, as the server requires
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "2026-03-10" in msg["Subject"]
    assert msg["To"] == "ops@example.com, lead@example.com" and msg["From"] == "twist@example.com"
    text, html = (p.get_content() for p in msg.iter_parts())
    for part in (text, html):
        for expected in (
            "RANK",
            "LOREAL",
            "BISSELL",
            "OLIVER",
            "Monday Rank",
            "LOREAL/IN",
            "BISSELL-WRIKE/IN",
            "Celtra - Create_Rename",
            "broken.json",
            "invalid JSON",
        ):
            assert expected in part, expected
    assert "4" in text and "75.0%" in text  # 4 processed, 3 of 4 archived
    assert PASSWORD not in caplog.text
    assert "Daily report for 2026-03-10: mailed to ops@example.com" in caplog.text


def test_one_report_per_day_across_a_restart(root, server):
    port, inbox = server
    day_of_work(root, at(D1, 9))
    first = reporter(root, port)
    first.tick(at(D2, 0, 1))
    first.tick(at(D2, 0, 2))
    first.close()
    second = reporter(root, port)  # the service restarted
    second.tick(at(D2, 0, 3))
    second.tick(at(D2, 23, 59))
    assert len(inbox.messages) == 1
    second.tick(at(D3, 0, 0))
    assert [s.split(":")[0][-10:] for s in subjects(inbox)] == ["2026-03-10", "2026-03-11"]


def test_a_report_is_not_sent_before_report_time(root, server):
    port, inbox = server
    day_of_work(root, at(D1, 9))
    r = reporter(root, port, report_time="06:30")
    r.tick(at(D2, 6, 29))
    assert inbox.messages == []
    r.tick(at(D2, 6, 30))
    assert len(inbox.messages) == 1


def test_missed_reports_are_sent_at_start_after_downtime_oldest_first(root, server):
    port, inbox = server
    day_of_work(root, at(D1, 9))
    # The service was down from D1 evening until D4 10:00: D1, D2 and D3 are all due, once each.
    r = reporter(root, port)
    r.tick(at(D4, 10))
    r.tick(at(D4, 10, 1))
    assert [s for s in subjects(inbox)] == sorted(subjects(inbox))
    assert len(inbox.messages) == 3
    assert "2026-03-10" in subjects(inbox)[0] and "2026-03-12" in subjects(inbox)[2]


def test_catch_up_goes_back_a_week_at_most(root, server):
    port, inbox = server
    day_of_work(root, at(D1, 9))
    reporter(root, port).tick(at(D1 + datetime.timedelta(days=30), 8))
    assert len(inbox.messages) == 7


def test_clock_changes_neither_skip_nor_double_a_report(root, server):
    port, inbox = server
    london = ZoneInfo("Europe/London")
    start = datetime.date(2026, 10, 23)
    day_of_work(root, at(start, 12, zone=london))
    # 01:30 happens twice in London on 25 October 2026; tick every 10 minutes across it for four days.
    r = reporter(root, port, timezone="Europe/London", report_time="01:30")
    now, end = at(start, 12, zone=london), at(start + datetime.timedelta(days=4), 12, zone=london)
    while now < end:
        r.tick(now)
        now += 600
    days = [s.split(":")[0][-10:] for s in subjects(inbox)]
    assert days == ["2026-10-23", "2026-10-24", "2026-10-25", "2026-10-26"]


def test_a_failed_send_is_retried_with_backoff_and_never_raises(root, server, caplog):
    port, inbox = server
    day_of_work(root, at(D1, 9))
    inbox.refuse = "554 5.7.1 Rejected by the test relay"
    r = reporter(root, port)
    r.tick(at(D2, 0, 1))
    assert "554" in caplog.text and "Rejected by the test relay" in caplog.text
    inbox.refuse = None
    r.tick(at(D2, 0, 1) + 30)  # within the first 60 s of backoff: no new attempt
    assert inbox.messages == []
    r.tick(at(D2, 0, 1) + 61)
    assert len(inbox.messages) == 1
    r.tick(at(D2, 0, 1) + 200)
    assert len(inbox.messages) == 1


def test_the_password_never_reaches_the_log_even_when_login_fails(root, server, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    port, inbox = server
    day_of_work(root, at(D1, 9))
    monkeypatch.setenv("JW_TEST_SMTP_PASSWORD", "wrong-" + PASSWORD)
    reporter(root, port).tick(at(D2, 0, 1))
    assert inbox.messages == []
    assert "535" in caplog.text
    assert PASSWORD not in caplog.text


def test_a_server_with_an_untrusted_certificate_gets_nothing(root, server, caplog):
    port, inbox = server
    day_of_work(root, at(D1, 9))
    reporter(root, port, ca_file="").tick(at(D2, 0, 1))  # the system's CAs do not know the test certificate
    assert inbox.messages == [] and inbox.logins == []
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_alerts_go_out_at_most_once_per_interval_and_summarise_since_the_last(root, server):
    port, inbox = server
    r = reporter(root, port, alert_interval_minutes=15)
    t0 = at(D1, 9)
    r.tick(t0)  # the first start: only what happens from now on is news
    drop(root, "RANK", "bad1.json", b"[1]")
    run_once(make_config(root), clock=lambda: t0 + 60)
    r.tick(t0 + 61)
    drop(root, "RANK", "bad2.json", b"[2]")
    run_once(make_config(root), clock=lambda: t0 + 120)
    r.tick(t0 + 121)
    r.tick(t0 + 61 + 14 * 60)
    assert len(inbox.messages) == 1
    r.tick(t0 + 61 + 15 * 60)
    first, second = (m.get_content() for m in inbox.messages)
    assert "bad1.json" in first and "bad2.json" not in first
    assert "bad2.json" in second and "bad1.json" not in second
    assert all(m["Subject"].startswith("json-workflow alert: 1 file failed") for m in inbox.messages)
    r.tick(t0 + 3600)  # nothing new: no alert
    assert len(inbox.messages) == 2


def test_an_alert_names_a_destination_in_trouble(root, server):
    port, inbox = server
    r = reporter(root, port)
    t0 = at(D1, 9)
    r.tick(t0)
    (root / "SYNC/MAKE").mkdir(parents=True)
    (root / "SYNC/MAKE/Monday Rank").write_text("a file, not a folder")
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    run_once(make_config(root), clock=lambda: t0 + 5)
    r.tick(t0 + 10)
    (msg,) = inbox.messages
    assert "1 destination in trouble" in msg["Subject"]
    assert "Monday Rank" in msg.get_content()


def test_without_email_the_report_is_written_to_the_reports_folder_once(root):
    day_of_work(root, at(D1, 9))
    r = reporter(root)
    r.tick(at(D2, 0, 1))
    html = root / "JSON_PARSER_LOGS/reports/2026-03-10.html"
    assert html.is_file() and "LOREAL" in html.read_text()
    assert "LOREAL" in html.with_suffix(".txt").read_text()
    html.unlink()
    r.tick(at(D2, 0, 2))
    assert not html.exists()
    with sqlite3.connect(root / "JSON_PARSER_STATE/journal.sqlite3") as db:
        assert db.execute("SELECT day FROM reports").fetchall() == [("2026-03-10",)]


def _config_file(tmp_path, root, port: int, **email) -> str:
    settings = email_settings(port, **email)
    lines = [f'root = "{root}"', "[email]"]
    for key, value in settings.items():
        value = repr(value).replace("'", '"') if not isinstance(value, bool) else str(value).lower()
        lines.append(f"{key} = {value}")
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_report_command_writes_html_and_text_and_sends_on_request(root, server, tmp_path):
    port, inbox = server
    drop(root, "RANK", "a.json", job("RANK", "PRODUCTION", 1))
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    today = datetime.datetime.now(UTC).date().isoformat()
    out = tmp_path / "out/today.html"
    out.parent.mkdir()
    env = {"JW_TEST_SMTP_PASSWORD": PASSWORD}
    config = _config_file(tmp_path, root, port)
    done = cli("report", "--output", str(out), "--config", config, env=env)
    assert done.returncode == 0, done.stderr
    assert "RANK" in out.read_text() and "RANK" in out.with_suffix(".txt").read_text()
    assert inbox.messages == []
    sent = cli("report", "--date", today, "--send", "--config", config, env=env)
    assert sent.returncode == 0, sent.stderr
    (msg,) = inbox.messages
    assert today in msg["Subject"]
    inbox.refuse = "550 5.1.1 Mailbox unavailable for the test"
    failed = cli("report", "--send", "--config", config, env=env)
    assert failed.returncode == 1
    assert "550" in failed.stderr and "Mailbox unavailable for the test" in failed.stderr
    assert PASSWORD not in failed.stderr + failed.stdout


def test_the_service_sends_a_missed_report_at_start_and_not_again_after_a_restart(root, server, tmp_path):
    port, inbox = server
    yesterday = datetime.datetime.now(UTC).date() - datetime.timedelta(days=1)
    day_of_work(root, at(yesterday, 9))  # it ran yesterday; the service was down at midnight
    config = tmp_path / "service.toml"
    config.write_text(
        open(_config_file(tmp_path, root, port, alerts=False))
        .read()
        .replace(f'root = "{root}"', f'root = "{root}"\nstable_seconds = 1\nscan_interval = 60')
    )
    env = {"JW_TEST_SMTP_PASSWORD": PASSWORD}
    first = Service(root, config, env).start()
    try:
        wait_for(lambda: " due at " in first.text(), what="the reporter's first round")
        wait_for(lambda: len(inbox.messages) == 1, what="the missed report")
        assert yesterday.isoformat() in inbox.messages[0]["Subject"]
        assert "OLIVER/broken.json" in inbox.messages[0].get_body(("plain",)).get_content()
    finally:
        assert first.stop() == 0
    second = Service(root, config, env).start()
    try:
        wait_for(lambda: second.text().count(" due at ") == 2, what="the restarted reporter's first round")
    finally:
        assert second.stop() == 0
    assert len(inbox.messages) == 1
    assert PASSWORD not in second.text()


def test_a_missing_password_stops_the_service_before_it_touches_anything(root, tmp_path, monkeypatch):
    monkeypatch.delenv("JW_TEST_SMTP_PASSWORD")
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    config = _config_file(tmp_path, root, 2525)
    started = cli("run", "--config", config, timeout=30)
    assert started.returncode == 2
    assert "email.password_env" in started.stderr and "JW_TEST_SMTP_PASSWORD" in started.stderr
    assert (root / "JSON/RANK/a.json").exists() and not (root / "JSON_STORE").exists()
    assert cli("run", "--once", "--config", config).returncode == 0  # processing needs no password
    checked = cli("check-config", "--config", config)  # it checks what the service checks
    assert checked.returncode == 2 and "email.password_env" in checked.stderr


def test_implicit_tls_on_port_465_style_servers(root):
    with smtp_server(implicit_tls=True) as (port, inbox):
        day_of_work(root, at(D1, 9))
        reporter(root, port, ssl=True, starttls=False).tick(at(D2, 0, 1))
        (msg,) = inbox.messages
    assert inbox.logins == ["postmaster"] and "2026-03-10" in msg["Subject"]


def test_the_report_is_mailed_even_when_its_copy_cannot_be_written(root, server, caplog):
    port, inbox = server
    day_of_work(root, at(D1, 9))
    r = reporter(root, port)
    (root / "JSON_PARSER_LOGS").mkdir(exist_ok=True)
    (root / "JSON_PARSER_LOGS/reports").write_text("a file where the reports folder should be")
    r.tick(at(D2, 0, 1))
    assert len(inbox.messages) == 1
    assert "Cannot keep a copy of the report for 2026-03-10" in caplog.text
    r.tick(at(D2, 0, 5))
    assert len(inbox.messages) == 1  # recorded as sent all the same
