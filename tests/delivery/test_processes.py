"""Worker processes: a large backlog shared among processes, each file once, through kills of one or all."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import STORE, Consumer, assert_each_once, drop, leftovers, make_config, query, wait_for
from json_workflow.delivery.processes import SHARED_FROM, share
from json_workflow.errors import WorkflowError
from json_workflow.intake.claim import Claims, worker_area
from json_workflow.run import run_once
from json_workflow.samples import backlog, job

RANK_ROUTE = "SYNC/MAKE/Monday Rank"
on_both_stores = pytest.mark.usefixtures("backend")  # on SQLite and on a fleet's PostgreSQL


def test_every_version_of_a_name_goes_to_one_process_and_names_spread_evenly():
    names = [f"{n}.json" for n in range(4000)]
    assert [share(n, 2) for n in names] == [share(n, 2) for n in names]
    for processes in (2, 3, 8):
        counts = collections.Counter(share(n, processes) for n in names)
        assert set(counts) == set(range(processes))
        assert max(counts.values()) < 1.2 * len(names) / processes
    assert share("caf\udce9.json", 2) in (0, 1)  # a name that is not UTF-8 (surrogate escapes) has a share too


def fill(root: Path, files: int, seed: int = 5) -> tuple[dict, dict]:
    """A backlog in the hot folder: (valid files, invalid files), each name -> (client, bytes)."""
    good, bad = {}, {}
    for client, name, data, valid in backlog(files, seed=seed, bad_every=40):
        drop(root, client, name, data)
        (good if valid else bad)[name] = (client, data)
    return good, bad


def config_file(tmp_path: Path, root: Path, processes: int = 2) -> Path:
    store = f'\n[store]\nurl = "{STORE["url"]}"\n' if STORE["url"] else ""
    path = tmp_path / "once.toml"
    path.write_text(f'root = "{root}"\nprocesses = {processes}\n{store}')
    return path


def rank_names(good: dict) -> set[str]:
    return {name for name, (client, _) in good.items() if client == "RANK"}


def finish(consumer: Consumer, expected: set[str]) -> None:
    wait_for(lambda: set(consumer.seen) >= expected, what="every routed copy taken downstream")
    consumer.stop.set()
    consumer.join()
    assert set(consumer.seen) == expected


@on_both_stores
def test_a_large_backlog_is_shared_and_each_file_processed_once(root, tmp_path):
    good, bad = fill(root, 600)
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    command = [sys.executable, "-m", "json_workflow", "run", "--once", "--config", str(config_file(tmp_path, root))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    finish(consumer, rank_names(good))
    assert_each_once(root, good, bad, consumer)
    assert "Sharing the backlog among 2 processes" in done.stderr
    config = make_config(root)
    log = (config.log_folder / "json_workflow.log").read_text()
    # The second process's lines reach the one log, under worker names of its own
    assert "[worker-1] [STARTUP] Processing:" in log and "[worker-11] [STARTUP] Processing:" in log
    assert log.count("Successfully processed") == len(good) and log.count("] Failed ") == len(bad)  # each once
    # ... and the console shows them as the parent's own (its terminal budget, its progress bar)
    assert done.stderr.count("Successfully processed") == len(good)
    said = done.stdout + done.stderr
    assert "Processed 600 files" in said and f"{len(bad)} failed, 0 pending" in said
    [(rows,)] = query(config, "SELECT COUNT(*) FROM files WHERE outcome IN ('archived', 'failed')")
    assert rows == 600
    assert not any((root / "JSON").rglob("*.json"))
    assert leftovers(root) == []  # no worker's claim area is left behind


@on_both_stores
def test_the_objects_frozen_for_the_forked_workers_are_thawed_when_they_end(root):
    # Frozen (gc.freeze) so that no collection copies the pages the workers share; a caller that goes on
    # after the run (a test, a script) gets its collector back as it was.
    import gc

    fill(root, SHARED_FROM + 10)
    before = gc.get_freeze_count()
    assert run_once(make_config(root, processes=2)).pending == 0
    assert gc.get_freeze_count() == before


def test_a_worker_area_that_is_not_a_folder_stops_the_run_before_anything_is_claimed(root, outside):
    fill(root, SHARED_FROM)
    area = worker_area(make_config(root).claim_area, 2)
    area.parent.mkdir(parents=True)
    area.symlink_to(outside)  # a worker could claim nothing into it: its share would wait for ever
    with pytest.raises(WorkflowError, match=r"the claim area .*\.process-2 is a symlink or not a folder"):
        run_once(make_config(root, processes=2))
    assert len(list((root / "JSON").rglob("*.json"))) == SHARED_FROM and list(outside.iterdir()) == []


@on_both_stores
def test_a_small_backlog_stays_in_one_process(root):
    fill(root, SHARED_FROM - 1)
    summary = run_once(make_config(root, processes=2))
    assert summary.processed == SHARED_FROM - 1
    assert not worker_area(make_config(root).claim_area, 2).exists()


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def claims_in(area: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(area))


def started_with_the_worker_busy(root: Path, tmp_path: Path) -> tuple[Consumer, list[str], subprocess.Popen]:
    """A consumer at the routed folder, and `run --once` with two processes once its worker holds claims."""
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    area = worker_area(make_config(root).claim_area, 2)
    command = [sys.executable, "-m", "json_workflow", "run", "--once", "--config", str(config_file(tmp_path, root))]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: claims_in(area) > 0 or run.poll() is not None, timeout=60, what="the worker's claims")
    return consumer, command, run


@on_both_stores
def test_a_worker_process_killed_mid_batch_is_finished_by_the_run(root, tmp_path):
    good, bad = fill(root, 800)
    consumer, command, run = started_with_the_worker_busy(root, tmp_path)
    (worker,) = children(run.pid)
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert f"Worker process 2 (pid {worker}) was killed by SIGKILL; its files are finished here" in stderr
    # Counted once each: what the worker finished before it died, what its run finished for it
    assert "Processed 800 files" in stdout + stderr and f"{len(bad)} failed, 0 pending" in stdout + stderr
    finish(consumer, rank_names(good))
    assert_each_once(root, good, bad, consumer)
    assert not any((root / "JSON").rglob("*.json"))
    assert leftovers(root) == []


@on_both_stores
@pytest.mark.parametrize("victim", ["group", "parent"])
def test_a_run_killed_whole_mid_batch_is_finished_once_by_the_next(root, tmp_path, victim):
    # The whole process group (a service manager, a Ctrl-C gone wrong), or the parent alone (its workers die with it).
    good, bad = fill(root, 800)
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    config = config_file(tmp_path, root)
    area = make_config(root).claim_area
    command = [sys.executable, "-m", "json_workflow", "run", "--once", "--config", str(config)]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(
        lambda: (
            (claims_in(worker_area(area, 2)) > 0 and claims_in(area) > claims_in(worker_area(area, 2)))
            or run.poll() is not None
        ),
        timeout=60,
        what="claims in both processes' areas",
    )
    workers = children(run.pid)
    if victim == "group":
        os.killpg(run.pid, signal.SIGKILL)
    else:
        run.kill()
    assert run.wait() == -signal.SIGKILL
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), what="its workers gone")
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    finish(consumer, rank_names(good))
    assert_each_once(root, good, bad, consumer)
    assert not any((root / "JSON").rglob("*.json"))
    assert leftovers(root) == []


def test_hostile_files_in_a_shared_backlog_each_land_once_where_one_process_puts_them(root, outside):
    good, bad = fill(root, SHARED_FROM + 50)
    rank = root / "JSON/RANK"
    hostile = {  # name -> bytes: each one fails, in whichever process its name falls to
        b"bad \xe9.json": b'{"broken": ',
        b"empty.json": b"",
        b"nan.json": b'{"JobSpecification": {"JobDetails": {"ClientCode": "RANK", "JobCategory": "X", "Q": NaN}}}',
        b"digits.json": b'{"JobSpecification": {"JobDetails": {"ClientCode": "RANK", "Q": ' + b"9" * 5000 + b"}}}",
        b"surrogate.json": b'{"JobSpecification": {"JobDetails": {"ClientCode": "RANK", "JobCategory": "\\ud800"}}}',
    }
    for name, data in hostile.items():
        with open(os.path.join(os.fsencode(rank), name), "wb") as f:
            f.write(data)
    latin1 = b"caf\xe9 \xabcopy\xbb.json"  # a valid job under a name that is not UTF-8
    with open(os.path.join(os.fsencode(rank), latin1), "wb") as f:
        f.write(job("RANK", "X", 1))
    (outside / "secret.json").write_bytes(b"{}")
    os.symlink(outside / "secret.json", rank / "link.json")
    summary = run_once(make_config(root, processes=2))
    assert summary.failed == len(bad) + len(hostile) + 1 and summary.pending == 0
    assert_each_once(root, good, bad, Consumer(root / RANK_ROUTE))
    for name, data in hostile.items():
        (failed,) = [
            Path(os.fsdecode(os.path.join(os.fsencode(root / "JSON_FAILED/RANK"), n)))
            for n in os.listdir(os.fsencode(root / "JSON_FAILED/RANK"))
            if n.endswith(b"_" + name)
        ]
        assert failed.read_bytes() == data
    (link,) = [p for p in (root / "JSON_FAILED/RANK").iterdir() if p.name.endswith("_link.json")]
    assert link.is_symlink() and (outside / "secret.json").read_bytes() == b"{}"
    assert latin1 in os.listdir(os.fsencode(root / "JSON_STORE/RANK"))
    assert {share(os.fsdecode(n), 2) for n in hostile} == {0, 1}  # both processes met hostile files
    assert leftovers(root) == []


def test_a_claim_in_a_worker_area_is_named_by_its_client_folder_when_the_instance_recovers_it(root):
    # The instance's recovery meets journal entries of its workers' claims: each keeps its client and name.
    config = make_config(root)
    claims = Claims(config.hot, config.claim_area, 0o775)
    claim = str(worker_area(config.claim_area, 2) / "rank" / "00000000000000000001_a.json")
    candidate = claims.candidate(claim)
    assert candidate is not None
    assert (candidate.folder, candidate.name, candidate.display) == ("rank", "a.json", "rank/a.json")
    assert candidate.origin == str(config.hot / "rank" / "a.json")
    deeper = str(worker_area(config.claim_area, 2) / "x" / "rank" / "00000000000000000001_a.json")
    assert claims.candidate(deeper) is None  # not a claim of this area's layout


def test_an_interrupt_to_the_run_alone_stops_its_workers_and_the_next_run_finishes(root, tmp_path):
    good, bad = fill(root, 3000)
    consumer, command, run = started_with_the_worker_busy(root, tmp_path)
    run.send_signal(signal.SIGINT)  # to the run's process only, as `kill -INT PID` or a supervisor sends it
    _, stderr = run.communicate(timeout=60)
    assert run.returncode != 0 and "Traceback" not in stderr, stderr
    # The worker stopped too, before its share was done: its files wait in the hot folder
    assert any(share(p.name, 2) == 1 for p in (root / "JSON").rglob("*.json"))
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    finish(consumer, rank_names(good))
    assert_each_once(root, good, bad, consumer)
    assert leftovers(root) == []
