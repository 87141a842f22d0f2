"""The worker pool: results in order, and as many threads as keep the process busy."""

from __future__ import annotations

import threading
import time

import pytest

from json_workflow.delivery.workers import MIN_ITEMS, TARGET_BUSY, Workers, cpu_contended, next_count


@pytest.mark.parametrize(
    "count, busy, expected",
    [
        (1, 1.0, 1),  # one thread keeps a core busy: stay at one
        (10, 1.9, 4),  # ten threads on two cores, busy with each other: far fewer
        (2, 1.0, 1),  # two threads under the GIL keep one core busy: back to one
        (1, 0.1, 7),  # one thread mostly waiting (a network share): more
        (4, 0.01, 10),  # never more than the limit
        (3, 50.0, 1),  # never fewer than one
    ],
)
def test_next_count(count, busy, expected):
    assert next_count(count, busy, limit=10) == expected


def test_no_more_threads_while_other_programs_hold_the_cpus():
    assert next_count(1, 0.1, limit=10, contended=True) == 1
    assert next_count(10, 1.9, limit=10, contended=True) == 4  # fewer is still fine


@pytest.mark.parametrize(
    "text, contended",
    [
        (
            "some avg10=35.50 avg60=3.16 avg300=2.09 total=770595644\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            True,
        ),
        ("some avg10=0.14 avg60=3.16 avg300=2.09 total=770595644\n", False),
        ("", False),
    ],
)
def test_cpu_pressure_is_read_from_the_kernels_file(tmp_path, text, contended):
    pressure = tmp_path / "cpu"
    pressure.write_text(text)
    assert cpu_contended(str(pressure)) is contended
    assert cpu_contended(str(tmp_path / "missing")) is False


@pytest.fixture
def calm(tmp_path):
    """A CPU pressure file that says no CPU is contended (the test machine may be busy)."""
    pressure = tmp_path / "cpu"
    pressure.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    return pressure


@pytest.fixture
def workers(calm):
    pool = Workers(8, pressure=str(calm))
    yield pool
    pool.close()


def test_a_waiting_phase_gets_no_more_threads_while_the_cpus_are_contended(calm):
    calm.write_text("some avg10=60.00 avg60=50.00 avg300=20.00 total=9\n")
    pool = Workers(8, pressure=str(calm))
    try:
        pool.map("waiting", lambda item: time.sleep(0.002), list(range(MIN_ITEMS)))
        assert pool.threads("waiting") == 1
    finally:
        pool.close()


def test_results_come_back_in_item_order_on_named_threads(workers):
    workers._threads["waiting"] = 8
    names = set()
    # Each thread's first item waits for seven others: the run goes on only with eight threads at once.
    # (A pool thread that finishes early takes another share, so without it a slow start shows fewer names.)
    eight = threading.Barrier(8, timeout=10)
    first = threading.local()

    def work(item):
        if not getattr(first, "passed", False):
            first.passed = True
            eight.wait()
        names.add(threading.current_thread().name)
        return item * 2

    assert workers.map("waiting", work, list(range(100))) == [i * 2 for i in range(100)]
    assert len(names) == 8 and all(n.startswith("worker-") for n in names)


def test_a_phase_that_waits_gets_more_threads(workers):
    assert workers.threads("waiting") == 1
    workers.map("waiting", lambda item: time.sleep(0.002), list(range(MIN_ITEMS)))
    assert workers.threads("waiting") == 8


def runs(start: int, busy: float, limit: int = 8) -> list[int]:
    """The thread counts of a phase's successive runs, each keeping the process `busy` (in cores)."""
    counts = [start]
    for _ in range(10):
        counts.append(next_count(counts[-1], busy, limit))
    return counts


def test_a_phase_that_keeps_the_cpu_busy_comes_down_to_one_thread_and_stays():
    # Pure Python work under the GIL keeps one core busy however many threads share it.
    assert runs(8, busy=1.0) == [8, 6, 4, 3, 2, 1, 1, 1, 1, 1, 1]
    # Work that releases the GIL can keep both cores of a 2-core machine busy: down faster.
    assert runs(8, busy=1.9) == [8, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def test_a_phase_at_the_target_share_keeps_its_threads():
    assert runs(5, busy=TARGET_BUSY) == [5] * 11


def test_a_phase_is_resized_from_the_cpu_and_wall_time_map_measured_once_enough_items_add_up(workers):
    # What map measures around a run, given as numbers: 8 threads kept the process 1.5 cores busy.
    workers._threads["busy"] = 8
    workers._measure("busy", 8, MIN_ITEMS // 2, wall=1.0, cpu=1.0)
    assert workers.threads("busy") == 8  # too few items to judge yet
    workers._measure("busy", 8, MIN_ITEMS - MIN_ITEMS // 2, wall=1.0, cpu=2.0)
    assert workers.threads("busy") == next_count(8, 1.5, limit=8) == 4


def test_small_batches_resize_a_phase_once_they_add_up(workers):
    for n in range(MIN_ITEMS - 1):
        workers.map("lone", lambda item: time.sleep(0.002), [n])
        assert workers.threads("lone") == 1
    workers.map("lone", lambda item: time.sleep(0.002), [MIN_ITEMS])
    assert workers.threads("lone") == 8


def test_one_thread_runs_in_the_caller_under_the_first_workers_name(workers):
    caller = threading.current_thread()
    before = caller.name
    seen = workers.map("single", lambda item: (threading.current_thread(), threading.current_thread().name), [1, 2])
    assert seen == [(caller, "worker-1"), (caller, "worker-1")]
    assert caller.name == before
