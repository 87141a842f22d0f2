"""The stability tracker: when a reported file is complete, with an injected clock and real files."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from json_workflow.intake.stability import StabilityTracker, open_for_writing


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fresh(path):
    """A file modified just now (so only the clock decides when it is stable)."""
    path.write_bytes(b'{"a": 1}')
    return str(path)


def test_open_for_writing_sees_a_local_writer(tmp_path):
    path = tmp_path / "a.json"
    with open(path, "wb") as writer:
        writer.write(b"{")
        assert open_for_writing(str(path)) is True
    assert open_for_writing(str(path)) is False


def test_a_closed_file_is_ready_at_once(tmp_path):
    tracker = StabilityTracker(2, Clock())
    path = fresh(tmp_path / "a.json")
    tracker.seen(path, "REALTIME", complete=True)
    assert tracker.ready() == [(path, "REALTIME", False)]
    assert path not in tracker


def test_a_symlink_is_ready_as_a_symlink(tmp_path):
    # The service sets a link aside unfollowed; what the path is, it learns from the tracker's own lstat.
    tracker = StabilityTracker(2, Clock())
    link, plain = tmp_path / "a.json", fresh(tmp_path / "b.json")
    link.symlink_to(fresh(tmp_path.parent / "elsewhere.json"))
    tracker.seen(str(link), "REALTIME", complete=True)
    tracker.seen(plain, "REALTIME", complete=True)
    assert tracker.ready() == [(str(link), "REALTIME", True), (plain, "REALTIME", False)]


def test_a_scanned_file_waits_until_unchanged_for_stable_seconds(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(2, clock)
    path = fresh(tmp_path / "a.json")
    tracker.seen(path, "PERIODIC")
    assert tracker.ready() == []
    clock.now += 1.5
    assert tracker.ready() == []
    clock.now += 1
    assert tracker.ready() == [(path, "PERIODIC", False)]


def test_a_change_restarts_the_wait(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(2, clock)
    path = fresh(tmp_path / "a.json")
    tracker.seen(path, "PERIODIC")
    tracker.ready()
    clock.now += 1.5
    with open(path, "ab") as f:
        f.write(b" ")
    assert tracker.ready() == []
    clock.now += 1.5
    assert tracker.ready() == []
    clock.now += 1
    assert tracker.ready() == [(path, "PERIODIC", False)]


def test_a_file_at_rest_for_long_needs_no_wait(tmp_path):
    tracker = StabilityTracker(2, Clock())
    path = fresh(tmp_path / "a.json")
    old = time.time() - 60
    os.utime(path, (old, old))
    tracker.seen(path, "STARTUP")
    assert tracker.ready() == [(path, "STARTUP", False)]


def test_a_file_a_local_writer_holds_open_is_never_ready(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(2, clock)
    path = tmp_path / "a.json"
    with open(path, "wb") as writer:
        writer.write(b'{"half": ')
        writer.flush()
        old = time.time() - 60
        os.utime(path, (old, old))
        tracker.seen(str(path), "REALTIME", complete=True)
        clock.now += 100
        assert tracker.ready() == []
    clock.now += 3
    assert tracker.ready() == [(str(path), "REALTIME", False)]


def test_a_vanished_file_is_dropped(tmp_path):
    tracker = StabilityTracker(2, Clock())
    path = fresh(tmp_path / "a.json")
    tracker.seen(path, "REALTIME", complete=True)
    os.unlink(path)
    assert tracker.ready() == []
    assert len(tracker) == 0


def test_a_held_file_is_ignored_until_its_retry_time(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(2, clock)
    path = fresh(tmp_path / "a.json")
    tracker.hold(path, "REALTIME", 4)
    assert tracker.seen(path, "REALTIME", complete=True) is False
    assert tracker.release_due() == 0
    assert tracker.ready() == []
    clock.now += 4
    assert tracker.release_due() == 1
    assert tracker.ready() == [(path, "REALTIME", False)]


def test_the_watchers_reports_are_known_to_every_other_look_in_the_order_they_came(tmp_path):
    # The watcher's thread reports without the lock; a scan, a hold and the main loop see its reports at once.
    clock = Clock()
    tracker = StabilityTracker(2, clock)
    a, b, c = (fresh(tmp_path / f"{n}.json") for n in "abc")
    tracker.report(a, "REALTIME", complete=True)
    tracker.report(b, "REALTIME")
    tracker.report(c, "REALTIME", complete=True)
    tracker.report(a, "REALTIME", complete=True)  # closed after it was created: one file, reported twice
    assert len(tracker) == 3 and b in tracker
    assert tracker.seen(b, "PERIODIC") is False  # tracked already: a scan does not count it as missed
    tracker.hold(c, "REALTIME", 60)
    assert tracker.ready() == [(a, "REALTIME", False)]  # b waits to be stable, c for its destination
    clock.now += 2
    assert tracker.ready() == [(b, "REALTIME", False)]
    tracker.report(c, "REALTIME", complete=True)  # held: its events change nothing until its retry time
    assert tracker.ready() == [] and c not in tracker


def test_a_report_of_a_complete_file_wakes_the_loop_and_a_burst_wakes_it_once(tmp_path):
    tracker = StabilityTracker(2, Clock())
    wake = tracker.wake
    tracker.report(fresh(tmp_path / "a.json"), "REALTIME")  # not complete: nothing to do before stable_seconds
    assert not wake.is_set()
    for n in range(100):
        tracker.report(fresh(tmp_path / f"{n}.json"), "REALTIME", complete=True)
    began = time.monotonic()
    wake.wait(5)
    assert time.monotonic() - began < 1
    assert os.read(wake._read, 4096) == b"\0"  # one byte for the burst, not a hundred
    wake.clear()
    tracker.report(fresh(tmp_path / "b.json"), "REALTIME", complete=True)  # after a clear: a wake-up again
    began = time.monotonic()
    wake.wait(5)
    assert time.monotonic() - began < 1


CHECK_BESIDE_A_WRITER = """
import os, sys, threading
from json_workflow.intake.stability import open_for_writing

path, stop = sys.argv[1], threading.Event()

def writer():
    while not stop.is_set():
        os.close(os.open(path, os.O_WRONLY))

thread = threading.Thread(target=writer)
thread.start()
try:
    for _ in range(20000):
        open_for_writing(path)
finally:
    stop.set()
    thread.join()
print("alive")
"""


def test_a_writer_reopening_the_file_during_the_check_never_kills_the_process(tmp_path):
    # The read lease's break is signalled with SIGIO, whose default action ends the process.
    path = tmp_path / "a.json"
    path.write_bytes(b"{}")
    done = subprocess.run(
        [sys.executable, "-c", CHECK_BESIDE_A_WRITER, str(path)], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr
