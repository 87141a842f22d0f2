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
    assert tracker.ready() == [(path, "REALTIME")]
    assert path not in tracker


def test_a_scanned_file_waits_until_unchanged_for_stable_seconds(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(2, clock)
    path = fresh(tmp_path / "a.json")
    tracker.seen(path, "PERIODIC")
    assert tracker.ready() == []
    clock.now += 1.5
    assert tracker.ready() == []
    clock.now += 1
    assert tracker.ready() == [(path, "PERIODIC")]


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
    assert tracker.ready() == [(path, "PERIODIC")]


def test_a_file_at_rest_for_long_needs_no_wait(tmp_path):
    tracker = StabilityTracker(2, Clock())
    path = fresh(tmp_path / "a.json")
    old = time.time() - 60
    os.utime(path, (old, old))
    tracker.seen(path, "STARTUP")
    assert tracker.ready() == [(path, "STARTUP")]


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
    assert tracker.ready() == [(str(path), "REALTIME")]


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
    assert tracker.ready() == [(path, "REALTIME")]


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
