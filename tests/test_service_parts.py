"""The Service driven in-process: its stats line, reload (restart keys kept), and its main loop stepped."""

from __future__ import annotations

import contextlib
import logging
import os

from conftest import drop, drop_atomically, wait_for
from json_workflow.config import build
from json_workflow.delivery.model import Summary
from json_workflow.intake.scan import candidate_at
from json_workflow.run import exclusive
from json_workflow.samples import job
from json_workflow.service import Service


@contextlib.contextmanager
def in_process(root, **settings):
    """A Service with its tracker and a real inotify watcher, without the main loop."""
    (root / "JSON/RANK").mkdir(exist_ok=True)  # folders made later would need the claim area too
    config = build(settings, "test", root=root)
    s = Service(config)
    s.tracker.stable_seconds = 0
    with exclusive(config) as journal:
        s.attach(journal)
        s.feeds.start()
        try:
            yield s
        finally:
            s.feeds.stop()
            s.pipeline.close()


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def _process(service, root, source: str, names: list[str], bad: bool = False) -> None:
    for name in names:
        drop(root, "RANK", name, b"{not json" if bad else job("RANK", "X", 1))
    batch = [(candidate_at(service.config.hot, str(root / "JSON/RANK" / n)), source) for n in names]
    service.pipeline.submit(batch, Summary())
    service.pipeline.drain(Summary())


def test_stats_line_counts_today_by_source_errors_and_success_and_survives_a_restart(root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    with in_process(root, stable_seconds=0) as first:
        _process(first, root, "STARTUP", ["s1.json", "s2.json"])
        _process(first, root, "STARTUP", ["s3.json"], bad=True)
        _process(first, root, "REALTIME", [f"r{n}.json" for n in range(5)])
        _process(first, root, "PERIODIC", ["p1.json", "p2.json"])
        first._log_stats()
    with in_process(root, stable_seconds=0) as second:  # a restart: the figures come from SQLite
        second._log_stats()
    lines = [m for m in messages(caplog) if m.startswith("Stats:")]
    assert lines == 2 * ["Stats: Today: 10 processed (startup: 3) (realtime: 5) (periodic: 2), 1 error, 90.0% success"]


def test_a_reload_refuses_new_routes_into_the_hot_folder_that_stays_until_a_restart(root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    cfg = tmp_path / "c.toml"
    # Valid on its own (its hot folder is IN), but paths change only at a restart: JSON stays the hot folder.
    cfg.write_text(
        '[paths]\nhot = "IN"\n[[routes]]\nname = "loop"\ndestination = "JSON/OUT"\nwhen = { ClientCode = "RANK" }\n'
    )
    with in_process(root, stable_seconds=0) as s:
        s.config_path, s.root = str(cfg), str(root)
        running = s.config
        s._reload()
        assert s.config is running
    (failed,) = [m for m in messages(caplog) if m.startswith("Reload failed")]
    assert f"routes[0].destination: {root}/JSON/OUT is inside the hot folder {root}/JSON" in failed


def test_a_reload_keeps_restart_keys_with_a_warning_and_applies_the_rest(root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    cfg = tmp_path / "c.toml"
    # paths, workers and watch shape the process (RESTART_KEYS); a rule and stable_seconds apply at once.
    cfg.write_text(
        'workers = 3\nwatch = "polling"\nstable_seconds = 4\n[paths]\narchive = "ELSEWHERE"\n'
        '[[routes]]\nname = "Acme"\ndestination = "ACME/IN"\nwhen = { ClientCode = "ACME" }\n'
    )
    with in_process(root, stable_seconds=0) as s:
        s.config_path, s.root = str(cfg), str(root)
        running = s.config
        s._reload()
        assert (s.config.workers, s.config.watch, s.config.paths) == (running.workers, running.watch, running.paths)
        assert [r.name for r in s.config.routes] == ["Acme"]
        assert s.tracker.stable_seconds == 4
        assert s.feeds.watching.mode == "inotify"
        data = job("ACME", "X", 1)
        drop(root, "ACME", "a.json", data)
        s.pipeline.submit([(candidate_at(s.config.hot, str(root / "JSON/ACME/a.json")), "REALTIME")], Summary())
        s.pipeline.drain(Summary())
    assert (root / "ACME/IN/a.json").read_bytes() == data  # the new rule delivers
    assert (root / "JSON_STORE/ACME/a.json").read_bytes() == data  # into the running archive
    assert not (root / "ELSEWHERE").exists()
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "Reload: paths, workers, watch cannot change while running; restart to apply") in logged
    assert (logging.INFO, "Configuration reloaded: 1 route") in logged


def test_a_reload_with_new_rules_logs_what_changed_and_what_a_week_of_the_archive_would_do(root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    for n, client in enumerate(["RANK", "RANK", "LOREAL"]):
        (root / "JSON_STORE" / client).mkdir(parents=True, exist_ok=True)
        (root / "JSON_STORE" / client / f"{n}.json").write_bytes(job(client, "PRODUCTION", n))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[routes]]\nname = "Monday Rank"\ndestination = "SYNC/RANK"\nwhen = { ClientCode = "RANK" }\n'
        '[[routes]]\nname = "Stores"\ndestination = "STORES/{ClientCode}"\nwhen = { ClientCode = "LOREAL" }\n'
    )
    with in_process(root, stable_seconds=0) as s:
        s.config_path, s.root = str(cfg), str(root)
        s._reload()

        def effect():
            return [m for m in messages(caplog) if m.startswith("Reload: replay of the last 7 days")]

        [line] = wait_for(effect, what="the replay's account")
    assert (
        "Reload: rules added 'Stores'; removed 'Monday RB', 'BISSELL-WRIKE/IN', 'LOREAL/IN', 'Celtra', "
        "'Celtra (eligible client)'; changed 'Monday Rank'"
    ) in messages(caplog)
    assert line == (
        "Reload: replay of the last 7 days (3 archived files): 3 would go elsewhere; "
        "+2 'Monday Rank', +1 'Stores', -1 'LOREAL/IN', -2 'Monday Rank'"
    )


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stepped_service_takes_the_backlog_then_events_then_scans_when_its_clock_says(root):
    """The main loop's turns, in-process and on a clock of the test's own: nothing here waits for time."""
    drop(root, "RANK", "old.json", job("RANK", "X", 1))
    os.utime(root / "JSON/RANK/old.json", (0, 0))  # at rest long before the start: the startup scan takes it
    clock = Clock()
    config = build({"stable_seconds": 5, "scan_interval": 60}, "test", root=root)
    service = Service(config, clock=clock)
    with exclusive(config) as journal:
        service.attach(journal)
        startup = service.start_up(report=False)
        try:
            assert service.step(startup) == 0.0  # a batch was handed over
            assert service.step(startup) > 0  # idle: it drained what was in flight
            assert (root / "JSON_STORE/RANK/old.json").exists()

            drop_atomically(root, "RANK", "new.json", job("RANK", "X", 2))  # renamed in: complete at once
            # The watcher's thread reports the event (one event: a rename into place is complete).
            wait_for(lambda: str(root / "JSON/RANK/new.json") in service.tracker, what="the event of new.json")
            service.step(startup)
            service.step(startup)
            assert (root / "JSON_STORE/RANK/new.json").exists()

            assert service.feeds.scans["started"] == 0
            clock.now += 60  # the periodic scan is due
            service.step(startup)
            assert service.feeds.scans["started"] == 1
        finally:
            service.shut_down()
