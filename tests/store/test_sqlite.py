"""The SQLite store: a journal made before schema versions is upgraded in place and read as it was; migrations."""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import sqlite3
import statistics
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import drop, make_config
from json_workflow.delivery.model import Outcome
from json_workflow.errors import StoreError
from json_workflow.reporting import figures
from json_workflow.run import run_once
from json_workflow.samples import job
from json_workflow.store import DATABASE, SqliteStore, rows
from json_workflow.store.rows import AlertState
from json_workflow.store.schema import MIGRATIONS, VERSION, Migration

DATA = Path(__file__).parent.parent / "data"
# Made by the code of 56c39ce, before schema versions (tests/data/journal-56c39ce.py says how).
OLD = DATA / "journal-56c39ce.sqlite3"
UTC = ZoneInfo("UTC")
NOON = datetime.datetime(2026, 3, 10, 14, 30, tzinfo=UTC).timestamp()
DAY = datetime.date(2026, 3, 10)
GHOST = "/srv/jw-56c39ce/JSON/.processing/RANK/00000000000000000042_ghost\udcff.json"


@pytest.fixture
def old(root) -> Path:
    """The state folder of `root`, holding the journal made by the old code."""
    state = root / "JSON_PARSER_STATE"
    state.mkdir()
    shutil.copyfile(OLD, state / DATABASE)
    return state


def query(state: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(state / DATABASE)) as db:
        return db.execute(sql).fetchall()


def test_a_journal_made_before_versions_is_upgraded_in_place_and_its_rows_read_as_the_old_code_read_them(old):
    assert query(old, "SELECT name FROM sqlite_schema WHERE name = 'schema_version'") == []
    before = {t: query(old, f"SELECT * FROM {t}") for t in ("files", "routed", "batches", "scans", "runs", "reports")}
    store = SqliteStore(old)
    try:
        assert query(old, "SELECT version FROM schema_version") == [(VERSION,)]
        after = {t: query(old, f"SELECT * FROM {t}") for t in before}
        # Version 2 adds the file history's columns to files (job, failed_as, retried), version 3 the
        # instance that processed a file and ran a run: empty for old rows.
        assert after["files"] == [(*row, None, None, None, None) for row in before["files"]]
        assert after["runs"] == [(*row, None) for row in before["runs"]]
        changed = ("files", "runs")
        assert {t: rows for t, rows in after.items() if t not in changed} == {
            t: before[t] for t in after if t not in changed
        }
        expected = json.loads((DATA / "journal-56c39ce.json").read_text())
        got = figures.build(store, DAY, UTC, NOON + 86400, lambda name, claim: False, "Celtra")
        added = {"instances": [], "received_superseded": 0}  # figures added since: none alone, nothing written again
        past = {"uptime": None, "current": False}  # built the next day: another day's figures show no uptime
        assert json.loads(json.dumps(got.as_dict())) == {**expected["figures"], **added, **past}
        assert figures.stats_line(store, NOON + 7200, UTC) == expected["stats_line"]
        # The journal's rows, a claim that is not UTF-8 (kept as a BLOB) included, and the reporter's state.
        assert store.claims() == [GHOST]
        assert [(e.claim, e.kind, e.state) for e in store.entries(GHOST)] == [(GHOST, "copy", "planned")]
        assert store.restarts(GHOST) == 1
        assert store.first_run() == NOON
        assert store.reports_sent() == {"2026-03-10"}
        assert store.alert_state() == AlertState(since=NOON + 7300, sent=0.0)
        assert [f.name for f in store.failures(0, NOON + 86400)] == ["OLIVER/broken.json", "LOREAL/empty.json"]
        assert [(t.folder, t.times) for t in store.trouble_counts(0, NOON + 86400)] == [
            ("/srv/jw-56c39ce/SYNC/MAKE/Monday RB", 2)
        ]
    finally:
        store.close()
    reopened = SqliteStore(old)  # at the current version: nothing to do
    reopened.close()
    assert query(old, "SELECT version FROM schema_version") == [(VERSION,)]


def test_the_upgraded_journal_goes_on_with_new_runs_and_keeps_the_old_days_figures(root, old):
    expected = json.loads((DATA / "journal-56c39ce.json").read_text())["figures"]
    drop(root, "RANK", "next.json", job("RANK", "PRODUCTION", 8))
    summary = run_once(make_config(root), clock=lambda: NOON + 2 * 86400)
    assert (summary.archived, summary.failed) == (1, 0)
    with contextlib.closing(SqliteStore(old)) as store:
        assert store.claims() == []  # the crash's planned copies were dropped: their claim is gone
        assert store.restarts(GHOST) == 0
        old_day = figures.build(store, DAY, UTC, NOON + 86400, lambda name, claim: False, "Celtra")
        new_day = figures.build(store, DAY + datetime.timedelta(days=2), UTC, NOON, lambda name, claim: False)
    # The new run closed the killed service's run: no uptime any more. Everything else is as it was.
    added = {"instances": [], "received_superseded": 0, "current": False}
    assert json.loads(json.dumps(old_day.as_dict())) == {**expected, "uptime": None, **added}
    assert (new_day.processed, new_day.received, [c.client for c in new_day.clients]) == (1, 1, ["RANK"])
    assert query(old, "SELECT MAX(id), COUNT(*) FROM files") == [(11, 11)]


def test_a_version_1_journal_gets_the_file_history_and_keeps_its_rows(root):
    """Version 1 is the schema of the code before the file history (c19ef96): upgraded in place at open."""
    state = root / "JSON_PARSER_STATE"
    state.mkdir()
    SqliteStore(state, MIGRATIONS[:1]).close()
    with contextlib.closing(sqlite3.connect(state / DATABASE)) as db, db:
        db.execute(
            "INSERT INTO files (id, received, name, client, source, outcome, finished, stage, reason)"
            " VALUES (1, 10, 'RANK/5903771.json', 'RANK', 'REALTIME', 'failed', 11, 'parse', 'invalid JSON')"
        )
    with contextlib.closing(SqliteStore(state)) as store:
        assert query(state, "SELECT version FROM schema_version") == [(VERSION,)]
        [found] = store.history("5903771")
        assert (found.id, found.name, found.outcome, found.reason, found.job, found.failed_as) == (
            1, "RANK/5903771.json", "failed", "invalid JSON", None, None,
        )  # fmt: skip
        assert store.failed_files() == []  # its failed file is not known: only `retry` by client reaches it
        assert store.live() == []


def test_a_new_store_has_exactly_the_schema_of_one_made_before_versions(tmp_path, old):
    SqliteStore(old).close()
    (tmp_path / "new").mkdir()
    SqliteStore(tmp_path / "new").close()
    schema = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name"
    assert query(tmp_path / "new", schema) == query(old, schema)


def test_later_migrations_run_once_in_order_and_the_version_follows(old):
    sql = ("ALTER TABLE runs ADD COLUMN host TEXT", "UPDATE runs SET host = 'here'")
    added = Migration(VERSION + 1, "a test column", sql)
    SqliteStore(old, (*MIGRATIONS, added)).close()
    assert query(old, "SELECT version FROM schema_version") == [(VERSION + 1,)]
    assert query(old, "SELECT DISTINCT host FROM runs") == [("here",)]
    SqliteStore(old, (*MIGRATIONS, added)).close()  # ALTER TABLE again would fail: it does not run twice


def test_a_failing_migration_leaves_the_journal_as_it_was(old):
    sql = ("ALTER TABLE runs ADD COLUMN host TEXT", "ALTER TABLE nowhere ADD x")
    broken = Migration(VERSION + 1, "a mistake", sql)
    with pytest.raises(
        StoreError, match=f"cannot upgrade the journal {old / DATABASE} to schema version {VERSION + 1}"
    ):
        SqliteStore(old, (*MIGRATIONS, broken))
    assert query(old, "SELECT name FROM sqlite_schema WHERE name = 'schema_version'") == []
    assert "host" not in [c[1] for c in query(old, "PRAGMA table_info(runs)")]


def test_a_journal_from_a_newer_version_is_refused_by_name_and_left_alone(old):
    SqliteStore(old).close()
    with contextlib.closing(sqlite3.connect(old / DATABASE)) as db, db:
        db.execute("UPDATE schema_version SET version = ?", (VERSION + 1,))
    data = (old / DATABASE).read_bytes()
    with pytest.raises(StoreError, match=f"{old / DATABASE}.*schema version {VERSION + 1}, newer"):
        SqliteStore(old)
    assert (old / DATABASE).read_bytes() == data


def test_the_outcomes_the_store_counts_are_the_delivery_outcomes_it_records():
    assert (rows.ARCHIVED, rows.FAILED, rows.PENDING) == (Outcome.ARCHIVED, Outcome.FAILED, Outcome.PENDING)


def test_a_writer_waiting_for_another_process_gets_the_lock_as_soon_as_it_is_free_and_never_past_its_timeout(tmp_path):
    """Worker processes share one journal: a batch waits a fraction of a millisecond past the other's commit (SQLite's
    own busy handler slept 1, 2, 5, 10 ms ...), and a lock held past the busy timeout is an error naming the journal."""
    store = SqliteStore(tmp_path, busy_seconds=1)
    # Another process's connection, as SQLite sees it (committed from a timer's thread).
    other = sqlite3.connect(tmp_path / DATABASE, isolation_level=None, check_same_thread=False)
    try:
        waits = []
        for _ in range(20):
            other.execute("BEGIN IMMEDIATE")
            released = threading.Timer(0.02, lambda: (waits.append(time.perf_counter()), other.execute("COMMIT")))
            released.start()
            store.run_started("once", 0.0)  # a write transaction: it waits for the other's
            waits[-1] = time.perf_counter() - waits[-1]
            released.join()
        assert statistics.median(waits) < 0.005, waits  # SQLite's own waits made this 1-10 ms and more
        other.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        with pytest.raises(StoreError, match=rf"{DATABASE}: database is locked by another process"):
            store.run_started("once", 0.0)
        assert 1 <= time.monotonic() - began < 2
        other.execute("COMMIT")
    finally:
        other.close()
        store.close()
