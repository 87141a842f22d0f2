"""The Monitor: what a stepped service counts, which destinations it knows in trouble, what it saves."""

from __future__ import annotations

import contextlib
import json

from conftest import drop_atomically, wait_for
from json_workflow.config import build
from json_workflow.monitor.live import ARCHIVE, FAILED
from json_workflow.monitor.state import Live
from json_workflow.run import exclusive
from json_workflow.samples import job
from json_workflow.service import Service


@contextlib.contextmanager
def stepped(root, **settings):
    """A Service started in-process (watching, no reporter), stepped by the test."""
    (root / "JSON/RANK").mkdir(exist_ok=True)
    config = build({"stable_seconds": 0, "retry_max_seconds": 1, **settings}, "test", root=root)
    service = Service(config)
    with exclusive(config) as journal:
        service.attach(journal)
        startup = service.start_up(report=False)
        try:
            yield service, startup
        finally:
            service.shut_down()


def step_until(service, startup, condition, what):
    def turned():
        service.step(startup)
        return condition()

    return wait_for(turned, what=what)


def test_files_and_copies_are_counted_by_client_outcome_and_rule(root):
    with stepped(root) as (service, startup):
        drop_atomically(root, "RANK", "a.json", job("RANK", "CELTRA", 1))
        drop_atomically(root, "LOREAL", "b.json", b"{")
        monitor = service.monitor
        step_until(service, startup, lambda: sum(monitor.files.values()) == 2, "two files counted")
        files, copies, buckets, _ = monitor.counters()
    assert files[("RANK", "archived")] == 1 and files[("LOREAL", "failed")] == 1
    assert files[("_unknown", "archived")] == 0  # known in advance: exported as 0
    assert copies["Monday Rank"] == 1 and copies["Celtra (eligible client)"] == 1 and copies["Monday RB"] == 0
    assert sum(buckets) == 2


def test_a_destination_in_trouble_is_known_with_its_error_and_next_retry_until_a_copy_reaches_it(root):
    blocked = root / "SYNC/MAKE/Monday Rank"
    blocked.parent.mkdir(parents=True)
    blocked.write_bytes(b"not a folder")
    with stepped(root) as (service, startup):
        drop_atomically(root, "RANK", "a.json", job("RANK", "PRODUCTION", 1))

        def trouble():
            return [d for d in service.monitor.snapshot().destinations if d.state != "ok"]

        [place] = step_until(service, startup, trouble, "the destination in trouble")
        assert place.folder == str(blocked) and place.rules == ["Monday Rank"]
        assert "not a folder" in place.error and place.since is not None
        step_until(service, startup, lambda: service.monitor.snapshot().pending == 1, "the file held")
        assert trouble()[0].next_retry > place.since
        blocked.unlink()
        blocked.mkdir()
        step_until(service, startup, lambda: not trouble(), "the destination working again")
        assert (blocked / "a.json").exists()
        texts = [e.text for e in service.monitor.snapshot(activity=50).activity]
    assert any(t.startswith("Destination working again") for t in texts)
    assert any(t.startswith("Destination in trouble") for t in texts)


def test_the_live_state_is_saved_in_the_store_for_status(root):
    with stepped(root) as (service, startup):
        service.step(startup)
        [row] = service.journal.live()
        live = Live.from_dict(json.loads(row.state))
    assert live.watch == "inotify" and live.watcher_alive and live.hot_ok
    assert [d.rules for d in live.destinations][0] == [ARCHIVE] and live.destinations[-1].rules == [FAILED]
