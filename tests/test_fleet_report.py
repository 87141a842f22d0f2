"""One daily report for a fleet, sent exactly once whatever the number of instances, even when its sender dies."""

from __future__ import annotations

import datetime
import json
import signal
import threading
import time
from zoneinfo import ZoneInfo

import psycopg
import pytest

from conftest import Service, drop, wait_for
from json_workflow.config import build
from json_workflow.reporting.reporter import Reporter
from json_workflow.run import run_once
from json_workflow.samples import job
from smtp_server import PASSWORD, email_settings, smtp_server
from test_fleet import fleet_config

UTC = ZoneInfo("UTC")
ENV = {"JW_TEST_SMTP_PASSWORD": PASSWORD}


def email_toml(port: int) -> str:
    lines = ["[email]"]
    for key, value in email_settings(port, alerts=False).items():
        lines.append(f"{key} = " + (str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')))
    return "\n".join(lines) + "\n"


def ran_yesterday(url: str) -> str:
    """A run recorded yesterday in the fleet's store: yesterday's report is due now. Returns the day."""
    yesterday = datetime.datetime.now(UTC) - datetime.timedelta(days=1)
    with psycopg.connect(url) as db:
        db.execute(
            "INSERT INTO runs (started, stopped, mode, instance) VALUES (%s, %s, 'once', 'a')",
            (yesterday.timestamp(), yesterday.timestamp() + 60),
        )
    return yesterday.date().isoformat()


def start(tmp_path, root, url, name, port) -> Service:
    config = fleet_config(tmp_path, root, url, name, extra=email_toml(port))
    return Service(root, config, ENV, log=tmp_path / f"{name}.log").start()


def reports(url: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute("SELECT day FROM reports").fetchall()


@pytest.fixture
def fleet_store(tmp_path, root, pg_server):
    """A fleet's store made by one run (schema and all), with a run recorded yesterday."""
    url = pg_server.database()
    drop(root, "RANK", "a.json", job("RANK", "PRODUCTION", 1))
    from conftest import cli

    done = cli("run", "--once", "--config", str(fleet_config(tmp_path, root, url, "a")))
    assert done.returncode == 0, done.stderr
    return url, ran_yesterday(url)


def test_two_instances_at_report_time_send_one_email_and_record_one_row(tmp_path, root, fleet_store):
    url, day = fleet_store
    with smtp_server() as (port, inbox):
        a, b = start(tmp_path, root, url, "a", port), start(tmp_path, root, url, "b", port)
        try:
            wait_for(lambda: len(inbox.messages) == 1, what="the report")
            wait_for(lambda: " due at " in a.text() and " due at " in b.text(), what="both reporters' first round")
        finally:
            assert a.stop() == 0 and b.stop() == 0
        assert len(inbox.messages) == 1
        assert day in inbox.messages[0]["Subject"]
    assert reports(url) == [(day,)]


@pytest.mark.slow  # about 40 s: the sender is taken for dead after its lease, then the report tick
def test_the_sender_killed_mid_send_leaves_the_report_to_another_still_exactly_one(tmp_path, root, fleet_store):
    url, day = fleet_store
    with smtp_server() as (port, inbox):
        inbox.hold_seconds = 15
        a, b = start(tmp_path, root, url, "a", port), start(tmp_path, root, url, "b", port)
        try:
            wait_for(inbox.held.is_set, what="a sender in the middle of sending")
            with psycopg.connect(url) as db:
                (sender,) = db.execute("SELECT instance FROM sends WHERE what = %s", (f"report {day}",)).fetchone()
            killed, survivor = (a, b) if sender == "a" else (b, a)
            killed.stop(signal.SIGKILL)
            wait_for(lambda: len(inbox.messages) == 1, timeout=120, what="the report, sent by the survivor")
            wait_for(lambda: reports(url) == [(day,)], what="the report recorded as sent")
            wait_for(lambda: f"Daily report for {day}: mailed" in survivor.text(), what="the survivor's log of it")
        finally:
            survivor.stop()
            killed.stop(signal.SIGKILL)
    assert len(inbox.messages) == 1


def test_alerts_are_throttled_fleet_wide_one_instance_mails_a_round(tmp_path, root, pg_server, monkeypatch):
    monkeypatch.setenv("JW_TEST_SMTP_PASSWORD", PASSWORD)
    url = pg_server.database()
    with smtp_server() as (port, inbox):
        configs = [
            build({"store": {"url": url}, "instance": name, "email": email_settings(port)}, "test", root=root)
            for name in ("a", "b")
        ]
        reporters = [Reporter(config) for config in configs]
        try:
            with psycopg.connect(url) as db:  # both alive, as their leases would say
                db.execute(
                    "INSERT INTO instances (name, host, pid, started, beat)"
                    " VALUES ('a', 'h', 1, 0, 1e12), ('b', 'h', 2, 0, 1e12)"
                )
            now = time.time()
            for reporter in reporters:
                reporter.tick(now)  # the first round only notes where alerts start
            drop(root, "RANK", "broken.json", b"{")
            run_once(configs[0], clock=lambda: now + 60)
            ticks = [threading.Thread(target=r.tick, args=(now + 120,)) for r in reporters]
            for tick in ticks:
                tick.start()
            for tick in ticks:
                tick.join()
            for reporter in reporters:
                reporter.tick(now + 180)  # within the interval: nobody mails again
        finally:
            for reporter in reporters:
                reporter.close()
    assert len(inbox.messages) == 1
    assert "1 file failed" in inbox.messages[0]["Subject"]


def test_an_instance_that_cannot_mail_leaves_the_report_to_one_that_can(tmp_path, root, fleet_store):
    url, day = fleet_store
    with psycopg.connect(url) as db:  # the mailer ran a minute ago (a restart, say): its report settings are known
        db.execute(
            "INSERT INTO instances (name, host, pid, started, beat, report) VALUES"
            " ('mailer', 'h', 1, 0, EXTRACT(EPOCH FROM now()) - 60, %s)",
            ('{"mails": true, "recipients": ["ops@example.com"], "report_time": "00:00"}',),
        )
    with smtp_server() as (port, inbox):
        quiet = Service(root, fleet_config(tmp_path, root, url, "quiet"), log=tmp_path / "quiet.log").start()
        try:
            wait_for(lambda: " due at " in quiet.text(), what="the quiet instance's first report round")
            assert reports(url) == []  # it did not take the day's send, nor mark it written
            assert "Daily reports are left to instance mailer, which can mail them" in quiet.text()
            mailer = start(tmp_path, root, url, "mailer", port)
            try:
                wait_for(lambda: len(inbox.messages) == 1, what="the report, mailed")
                wait_for(lambda: reports(url) == [(day,)], what="the report recorded as sent")
            finally:
                assert mailer.stop() == 0
            differ = [line for line in mailer.text().splitlines() if "Report settings differ" in line]
            assert len(differ) == 1 and "quiet has mails False" in differ[0] and "mailer here: mails True" in differ[0]
        finally:
            assert quiet.stop() == 0
    assert len(inbox.messages) == 1 and day in inbox.messages[0]["Subject"]


def test_a_reload_that_changes_the_report_settings_is_seen_by_the_fleet(root, pg_server):
    from json_workflow.store import open_store
    from json_workflow.store.fleet import Membership

    url = pg_server.database()
    config = build({"store": {"url": url, "lease_seconds": 3}, "instance": "ib"}, "test", root=root)
    open_store(config).close()  # the schema
    membership = Membership(url, None, "ib", lease=3, report=config.report_settings)
    membership.join(lambda why: time.sleep(0.2))
    store = open_store(config)
    try:
        assert json.loads(store.members()[0].report)["mails"] is False
        membership.report_changed({**config.report_settings, "mails": True, "recipients": ["ops@example.com"]})
        wait_for(lambda: json.loads(store.members()[0].report)["mails"], what="the new settings, renewed")
        assert json.loads(store.members()[0].report)["recipients"] == ["ops@example.com"]
    finally:
        store.close()
        membership.leave(area_empty=True)
