"""Statistics rows written by real runs into real SQLite, and the day's figures queried from them."""

from __future__ import annotations

import contextlib
import datetime
import json
from zoneinfo import ZoneInfo

import pytest

from conftest import cli, drop, kept, make_config, query
from json_workflow.delivery import records
from json_workflow.delivery.model import Delivery
from json_workflow.intake.scan import Candidate
from json_workflow.reporting import figures
from json_workflow.run import run_once
from json_workflow.samples import job
from json_workflow.store import Store, open_store

UTC = ZoneInfo("UTC")
LONDON = ZoneInfo("Europe/London")
# 2026-03-10 14:30 UTC: a plain day
NOON = datetime.datetime(2026, 3, 10, 14, 30, tzinfo=UTC).timestamp()
DAY = datetime.date(2026, 3, 10)


pytestmark = pytest.mark.usefixtures("backend")  # each test on SQLite and on PostgreSQL


def rows(root, sql: str, *args) -> list[tuple]:
    return query(make_config(root), sql, *args)


def store(root) -> contextlib.closing[Store]:
    return contextlib.closing(open_store(make_config(root)))


def day_figures(root, day=DAY, zone=UTC, present=lambda name, claim: False, highlight="Celtra"):
    with store(root) as s:
        return figures.build(s, day, zone, NOON, present, highlight)


def test_each_file_gets_one_row_with_its_fields_outcome_and_destinations(root):
    drop(root, "RANK", "good.json", job("RANK", "CELTRA", 1, title="Spring <launch>"))
    drop(root, "LOREAL", "bad.json", b"{broken")
    config = make_config(root)
    run_once(config, clock=lambda: NOON)
    got = rows(
        root,
        "SELECT name, client, source, outcome, category, studio, title, stage, reason, received,"
        " finished FROM files ORDER BY name",
    )
    assert got == [
        (
            "LOREAL/bad.json",
            "LOREAL",
            "STARTUP",
            "failed",
            None,
            None,
            None,
            "parse",
            "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
            NOON,
            NOON,
        ),
        (
            "RANK/good.json",
            "RANK",
            "STARTUP",
            "archived",
            "CELTRA",
            "RANK_STUDIO",
            "Spring <launch>",
            None,
            None,
            NOON,
            NOON,
        ),
    ]
    routed = rows(root, "SELECT rule, folder FROM routed ORDER BY rule")
    assert routed == [
        ("Celtra (eligible client)", kept(config, root / "SYNC/MAKE/Celtra - Create_Rename - Project_Design File")),
        ("Monday Rank", kept(config, root / "SYNC/MAKE/Monday Rank")),
    ]


def test_figures_of_a_day_match_what_was_processed(root):
    for n in range(3):
        drop(root, "RANK", f"r{n}.json", job("RANK", "PRODUCTION", n))
    drop(root, "RANK", "c.json", job("RANK", "CELTRA", 9))
    drop(root, "OLIVER", "o.json", job("OLIVER", "CELTRA", 8))
    drop(root, "BISSELL", "b.json", job("BISSELL", "ORDER", 7))
    drop(root, "BISSELL", "x.json", b"")
    run_once(make_config(root), clock=lambda: NOON)
    f = day_figures(root)
    assert (f.processed, f.archived, f.errors, f.batches) == (7, 6, 1, 1)
    assert round(f.success_rate, 2) == round(600 / 7, 2)
    assert f.sources == {"STARTUP": 7}
    clients = {c.client: c for c in f.clients}
    assert (clients["RANK"].processed, clients["RANK"].routed, clients["RANK"].highlighted) == (4, 4, 1)
    assert clients["RANK"].categories == [("PRODUCTION", 3), ("CELTRA", 1)]
    assert (clients["OLIVER"].routed, clients["OLIVER"].highlighted) == (1, 1)
    assert (clients["BISSELL"].processed, clients["BISSELL"].errors, clients["BISSELL"].routed) == (2, 1, 1)
    assert dict(f.destinations) == {
        str(root / "SYNC/MAKE/Monday Rank"): 4,
        str(root / "SYNC/MAKE/Celtra - Create_Rename - Project_Design File"): 2,
        str(root / "CLIENT-STORES/BISSELL-WRIKE/IN"): 1,
    }
    assert dict(f.hours)["14:00"] == 7 and sum(n for _, n in f.hours) == 7
    assert [(e.time, e.client, e.name) for e in f.last_errors] == [("14:30:00", "BISSELL", "BISSELL/x.json")]
    assert "empty file" in f.last_errors[0].reason
    assert (f.received, f.received_archived, f.received_failed, f.pending, f.unaccounted) == (7, 6, 1, 0, [])
    assert f.reconciled


def test_the_highlight_column_counts_rules_whose_name_contains_it(root):
    drop(root, "RANK", "c.json", job("RANK", "CELTRA", 9))
    run_once(make_config(root), clock=lambda: NOON)
    assert day_figures(root, highlight="monday").clients[0].highlighted == 1
    assert day_figures(root, highlight="").clients[0].highlighted == 0


def test_only_the_last_ten_errors_newest_first(root):
    for n in range(12):
        drop(root, "RANK", f"bad{n:02d}.json", b"[]")
        run_once(make_config(root), clock=lambda n=n: NOON + n)
    names = [e.name for e in day_figures(root).last_errors]
    assert names == [f"RANK/bad{n:02d}.json" for n in range(11, 1, -1)]


def test_a_waiting_file_is_pending_then_the_same_row_is_archived(root):
    (root / "SYNC/MAKE").mkdir(parents=True)
    (root / "SYNC/MAKE/Monday Rank").write_text("a file where a folder should be")
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    run_once(make_config(root), clock=lambda: NOON)
    assert rows(root, "SELECT outcome, stage FROM files") == [("pending", "deliver")]
    f = day_figures(root, present=lambda name, claim: (root / "JSON" / name).exists())
    assert (f.received, f.pending, f.processed, f.unaccounted) == (1, 1, 0, [])
    (root / "SYNC/MAKE/Monday Rank").unlink()
    run_once(make_config(root), clock=lambda: NOON + 60)
    assert rows(root, "SELECT outcome, received, finished FROM files") == [("archived", NOON, NOON + 60)]
    f = day_figures(root)
    assert (f.received, f.received_archived, f.pending, f.processed) == (1, 1, 0, 1)


def test_a_waiting_file_that_disappears_is_named_as_unaccounted_for(root):
    (root / "SYNC/MAKE").mkdir(parents=True)
    (root / "SYNC/MAKE/Monday Rank").write_text("not a folder")
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    run_once(make_config(root), clock=lambda: NOON)
    (root / "JSON/RANK/a.json").unlink()  # someone removed it from the hot folder while it waited
    f = day_figures(root, present=lambda name, claim: (root / "JSON" / name).exists())
    assert (f.received, f.pending, f.unaccounted, f.reconciled) == (1, 0, ["RANK/a.json"], False)


def test_a_row_opened_before_a_crash_is_closed_by_the_recovery(root):
    data = job("RANK", "PRODUCTION", 1)
    claim = make_config(root).claim_area / "RANK/00000000000000000001_a.json"
    claim.parent.mkdir(parents=True)
    claim.write_bytes(data)
    (root / "JSON_PARSER_STATE").mkdir()
    journal = open_store(make_config(root))
    crashed = Delivery(
        Candidate(str(claim), "RANK", name="a.json", origin=str(root / "JSON/RANK/a.json")), source="STARTUP"
    )
    journal.record_plan([], records.received([crashed], NOON - 5))  # what the crashed run wrote when it claimed it
    journal.close()
    f = day_figures(root, present=lambda name, claim: claim is not None and (root / claim).exists())
    assert (f.received, f.pending) == (1, 1)
    run_once(make_config(root), clock=lambda: NOON)
    assert rows(root, "SELECT outcome, received, source FROM files") == [("archived", NOON - 5, "STARTUP")]
    assert day_figures(root).reconciled


def test_days_follow_the_time_zone_and_clock_changes(root):
    # Europe/London: clocks go forward on 2026-03-29 (23 h) and back on 2026-10-25 (25 h).
    # 01:30 UTC on the autumn day is the second 01:00 (GMT); 23:30 UTC on 24 October is already the 25th there.
    drop(root, "RANK", "late.json", job("RANK", "X", 1))
    run_once(make_config(root), clock=lambda: datetime.datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp())
    drop(root, "RANK", "early.json", job("RANK", "X", 2))
    run_once(make_config(root), clock=lambda: datetime.datetime(2026, 10, 24, 23, 30, tzinfo=UTC).timestamp())
    assert len(day_figures(root, datetime.date(2026, 3, 29), LONDON).hours) == 23
    autumn = day_figures(root, datetime.date(2026, 10, 25), LONDON).hours
    assert len(autumn) == 25
    assert autumn[0] == ("00:00 BST", 1)
    assert autumn[1:3] == [("01:00 BST", 0), ("01:00 GMT", 1)]
    assert day_figures(root, datetime.date(2026, 10, 24), UTC).processed == 1
    assert day_figures(root, datetime.date(2026, 10, 24), LONDON).processed == 0


def test_prune_drops_finished_rows_past_retention_and_keeps_waiting_ones(root):
    (root / "SYNC/MAKE").mkdir(parents=True)
    (root / "SYNC/MAKE/Monday Rank").write_text("not a folder")
    drop(root, "RANK", "waits.json", job("RANK", "X", 1))
    drop(root, "LOREAL", "done.json", job("LOREAL", "X", 2))
    old = NOON - 100 * 86400
    run_once(make_config(root), clock=lambda: old)
    drop(root, "LOREAL", "new.json", job("LOREAL", "X", 3))
    run_once(make_config(root), clock=lambda: NOON)
    with store(root) as s:
        gone = s.prune(90, NOON)
    assert gone == 1
    assert sorted(rows(root, "SELECT name, outcome FROM files")) == [
        ("LOREAL/new.json", "archived"),
        ("RANK/waits.json", "pending"),
    ]
    assert rows(root, "SELECT COUNT(*) FROM routed") == [(1,)]


def test_stats_command_prints_the_day_as_json_and_text(root):
    drop(root, "RANK", "a.json", job("RANK", "PRODUCTION", 1))
    drop(root, "RANK", "b.json", b"nope")
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    out = cli("stats", "--json", "--root", str(root))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["processed"], data["archived"], data["errors"], data["reconciled"]) == (2, 1, 1, True)
    assert data["clients"][0]["client"] == "RANK"
    text = cli("stats", "--root", str(root))
    assert text.returncode == 0 and "RANK" in text.stdout and "b.json" in text.stdout


def test_stats_command_without_statistics_or_with_a_bad_date_says_so(root):
    out = cli("stats", "--root", str(root))
    assert out.returncode == 1 and "no statistics yet" in out.stderr
    bad = cli("stats", "--date", "yesterday", "--root", str(root))
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


def test_a_row_of_a_file_published_before_a_crash_is_closed_without_a_second_row(root):
    data = job("RANK", "PRODUCTION", 1)
    claim = make_config(root).claim_area / "RANK/00000000000000000001_a.json"
    claim.parent.mkdir(parents=True)
    claim.write_bytes(data)
    archive = root / "JSON_STORE/RANK"
    archive.mkdir(parents=True)
    (archive / "a.json").write_bytes(data)  # published just before the kill
    (root / "JSON_PARSER_STATE").mkdir()
    journal = open_store(make_config(root))
    crashed = Delivery(
        Candidate(str(claim), "RANK", name="a.json", origin=str(root / "JSON/RANK/a.json")), source="REALTIME"
    )
    journal.record_plan(
        [(str(claim), str(archive / ".a.json.1-1.jwtmp"), str(archive / "a.json"), "copy")],
        records.received([crashed], NOON - 5),
    )
    journal.mark_staged([str(claim)])
    journal.close()
    run_once(make_config(root), clock=lambda: NOON)
    assert rows(root, "SELECT outcome, received, finished, source FROM files") == [
        ("archived", NOON - 5, NOON, "REALTIME")
    ]
    assert not claim.exists()
