"""intake/feeds.py: the periodic scan's outcomes (completed, abandoned, slow, skipped), an inotify
overflow asking for a rescan, and the switch to polling when events keep missing files."""

from __future__ import annotations

import contextlib
import logging
import threading

from conftest import drop
from json_workflow.config import build
from json_workflow.intake.feeds import MISSED_SCANS_BEFORE_POLLING, Feeds
from json_workflow.intake.stability import StabilityTracker
from json_workflow.samples import job


@contextlib.contextmanager
def started(root, **settings):
    """Feeds watching root's hot folder with a real inotify watcher; scans are recorded in `feeds.recorded`."""
    (root / "JSON/RANK").mkdir(exist_ok=True)
    recorded: list[tuple] = []
    feeds = Feeds(
        build(settings, "test", root=root), StabilityTracker(0), lambda *scan: recorded.append(scan), lambda: None
    )
    feeds.recorded = recorded
    feeds.start()
    try:
        yield feeds
    finally:
        feeds.stop()


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_periodic_scan_reports_files_no_event_reported(root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    with started(root) as feeds:
        feeds.stop()  # nothing reports events now
        drop(root, "RANK", "a.json", job("RANK", "X", 1))
        feeds.periodic_scan(1)
        assert str(root / "JSON/RANK/a.json") in feeds.tracker
    assert any("Periodic scan #1 complete: 1 file found" in m for m in messages(caplog))
    assert feeds.scans["completed"] == 1
    ((outcome, _seconds, found, slow),) = feeds.recorded
    assert (outcome, found, slow) == ("completed", 1, False)


def test_a_scan_past_scan_timeout_is_abandoned_and_logged(root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    with started(root, scan_timeout=1e-9) as feeds:
        for n in range(5):
            drop(root, "RANK", f"{n}.json", job("RANK", "X", n))
        feeds.periodic_scan(3)
    assert feeds.scans["abandoned"] == 1 and feeds.recorded[0][0] == "abandoned"
    assert any("Periodic scan #3 abandoned" in m for m in messages(caplog))


def test_a_slow_scan_is_logged_as_slow(root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    with started(root, slow_scan_seconds=1e-9) as feeds:
        feeds.periodic_scan(1)
    assert feeds.scans["slow"] == 1 and feeds.recorded[0][3] is True
    assert any("was slow" in m for m in messages(caplog))


def test_a_scan_due_while_one_runs_is_skipped_and_counted(root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    release = threading.Event()
    busy = threading.Thread(target=release.wait)
    with started(root) as feeds:
        feeds._scan_thread = busy
        busy.start()
        try:
            feeds.start_scan()
        finally:
            release.set()
            busy.join()
    assert feeds.scans["skipped"] == 1 and feeds.recorded[0][0] == "skipped"
    assert any("skipped" in m for m in messages(caplog))


def test_an_inotify_overflow_asks_for_a_rescan(root):
    with started(root) as feeds:
        assert feeds.rescan_requested is False
        feeds.watching.on_overflow()
        assert feeds.rescan_requested is True
        assert feeds.tracker.wake.is_set()


def test_switches_to_polling_when_scans_keep_finding_files_events_missed(root):
    with started(root) as feeds:
        for _ in range(MISSED_SCANS_BEFORE_POLLING - 1):
            feeds.check_events(missed=2)
        assert feeds.watching.mode == "inotify"
        feeds.check_events(missed=0)  # a clean scan resets the count
        for _ in range(MISSED_SCANS_BEFORE_POLLING):
            feeds.check_events(missed=1)
        assert feeds.watching.mode == "polling"
