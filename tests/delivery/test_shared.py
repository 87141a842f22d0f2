"""The service's worker processes: a burst shared among them, each file once, through kills of one or all."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Consumer, Service, assert_exactly_once, drop_atomically, failed_entries, wait_for
from conftest import write_config as service_config
from json_workflow.delivery.model import Delivery
from json_workflow.delivery.shared import RESTART_SECONDS
from json_workflow.delivery.worker_process import packed, unpacked
from json_workflow.errors import DestinationError, Rejected, StillWriting
from json_workflow.intake import Source
from json_workflow.intake.scan import Candidate
from json_workflow.parse import Job
from json_workflow.routing.route import Destination
from json_workflow.samples import backlog
from web_client import request

RANK_ROUTE = "SYNC/MAKE/Monday Rank"
STARTED = re.compile(r"Started worker process (\d+) \(pid (\d+)\)")


def test_what_a_worker_sends_back_is_what_the_service_counts():
    candidate = Candidate("/r/JSON/ACME/a.json", "ACME")
    destinations = (Destination(Path("/r/JSON_STORE/ACME"), ("archive",)), Destination(Path("/r/out"), ("Print",)))
    job = Job("ACME", "PRINT", None, None, {"ClientCode": "ACME"})
    cases = [
        Delivery(candidate, Source.REALTIME, job, destinations, seconds=0.25, row=7, worker="worker-11"),
        Delivery(candidate, Source.STARTUP, rejection=Rejected("invalid JSON", "parse"), failed_as="/r/F/a.json"),
        Delivery(candidate, waiting_on=DestinationError("/r/out", PermissionError(13, "Permission denied"))),
        Delivery(candidate, waiting_on=StillWriting("still written")),
        Delivery(candidate, left_claimed=True, waiting_on=DestinationError("flush", OSError(5, "I/O error"))),
        Delivery(candidate, superseded=True),
    ]
    for sent in cases:
        got = unpacked(pickle.loads(pickle.dumps(packed(sent))))
        assert got.outcome == sent.outcome
        assert (got.candidate, got.source, got.seconds, got.row, got.worker) == (
            sent.candidate,
            sent.source,
            sent.seconds,
            sent.row,
            sent.worker,
        )
        assert [(d.path, d.reasons, d.is_archive) for d in got.destinations] == [
            (d.path, d.reasons, d.is_archive) for d in sent.destinations
        ]
        assert (got.job and got.job.client) == (sent.job and sent.job.client)
        assert type(got.waiting_on) is type(sent.waiting_on) and str(got.waiting_on) == str(sent.waiting_on)
        if isinstance(sent.waiting_on, DestinationError):  # the folder it waits for: the retry and the dashboard
            assert got.waiting_on.folder == sent.waiting_on.folder
            assert got.waiting_on.error.errno == sent.waiting_on.error.errno
        if sent.rejection is not None:
            assert (got.rejection.reason, got.rejection.stage, got.failed_as) == (
                "invalid JSON",
                "parse",
                "/r/F/a.json",
            )


def burst(root: Path, count: int, seed: int = 3) -> tuple[dict, dict, set]:
    """Write `count` files aside, then rename them all in at once (one in 50 invalid); returns (good, bad, RANK
    names). A backlog of 200 or more starts the worker processes."""
    good, bad, rank = {}, {}, set()
    staging = root.parent / "staging"
    staging.mkdir(exist_ok=True)
    for client, name, data, valid in backlog(count, seed=seed, bad_every=50):
        (staging / name).write_bytes(data)
        (good if valid else bad)[name] = (client, data)
        if valid and client == "RANK":
            rank.add(name)
    for name, (client, _) in (good | bad).items():
        (root / "JSON" / client).mkdir(parents=True, exist_ok=True)
        os.rename(staging / name, root / "JSON" / client / name)
    return good, bad, rank


def done(root: Path, good: dict, bad: dict) -> bool:
    archived = {name for _, _, names in os.walk(root / "JSON_STORE") for name in names}
    return archived >= set(good) and all(failed_entries(root, name) for name in bad)


def workers(text: str) -> dict[int, int]:
    """The worker processes the log says were started: number -> pid (the last one of each number)."""
    return {int(number): int(pid) for number, pid in STARTED.findall(text)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (the service not waiting for it yet) is dead too.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def config(tmp_path: Path, root: Path, extra: str = "", scan_interval: float = 2) -> Path:
    extra = f"processes = 2\nworkers = 2\n{extra}"
    return service_config(tmp_path / "shared.toml", root, extra=extra, scan_interval=scan_interval)


def started(tmp_path: Path, root: Path) -> tuple[Consumer, Service]:
    """A downstream consumer of the RANK folder, and a service with two worker processes."""
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    return consumer, Service(root, config(tmp_path, root)).start()


def test_a_burst_is_shared_among_worker_processes_each_file_once_and_lone_files_follow(tmp_path, root):
    consumer, service = started(tmp_path, root)
    try:
        good, bad, rank = burst(root, 800)
        wait_for(lambda: done(root, good, bad), timeout=120, what="the burst processed")
        pids = workers(service.text())
        assert set(pids) == {2, 3}
        text = service.text()
        # Each worker's own threads (worker-3.., worker-5..) did a share; the files' lines are in the one log
        assert "[worker-3] [REALTIME] Processing:" in text and "[worker-5] [REALTIME] Processing:" in text
        assert text.count("Successfully processed") == len(good)
        # A lone file once the workers run: through one of them, at once
        lone = next(iter(backlog(1, seed=99, bad_every=0)))
        dropped = time.monotonic()
        drop_atomically(root, lone[0], "lone.json", lone[2])
        wait_for(lambda: (root / "JSON_STORE" / lone[0] / "lone.json").exists(), timeout=5, what="the lone file")
        assert time.monotonic() - dropped < 2
        good["lone.json"] = (lone[0], lone[2])
        rank |= {"lone.json"} if lone[0] == "RANK" else set()
    finally:
        assert service.stop() == 0
    assert not any(alive(pid) for pid in pids.values())  # stopped with the service, once drained
    assert "Worker process" not in service.text()  # none died
    assert_exactly_once(root, good, bad, rank, consumer, allowed=())  # the claim areas, the workers' too, tidied


def test_files_a_scan_finds_handed_and_not_yet_claimed_are_not_counted_claimed_for_ever(tmp_path, root):
    """A scan during a burst reports files already handed to a worker: handed twice, the second claim finds
    each gone, and the worker says so."""
    service = Service(root, config(tmp_path, root, scan_interval=0.5)).start()
    try:
        good, bad, _ = burst(root, 3000)
        wait_for(lambda: done(root, good, bad), timeout=120, what="the burst processed")
        claimed = re.compile(r"^json_workflow_claimed_files (\S+)$", re.M)
        wait_for(lambda: float(claimed.search(request(service.url + "metrics").body).group(1)) == 0, what="0 claimed")
    finally:
        assert service.stop() == 0
    assert "missed by events" in service.text()  # the scans ran meanwhile


def test_a_worker_killed_mid_burst_loses_nothing_delivers_nothing_twice_and_starts_again(tmp_path, root):
    consumer, service = started(tmp_path, root)
    try:
        good, bad, rank = burst(root, 1000)
        wait_for(lambda: len(workers(service.text())) == 2, timeout=30, what="the worker processes")
        victim = workers(service.text())[2]
        wait_for(lambda: service.text().count("[worker-3] [REALTIME] Successfully") >= 50, what="worker 2 at work")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed")
        assert f"Worker process 2 (pid {victim}) was killed by SIGKILL" in service.text()
        # It starts again (at the next files after RESTART_SECONDS); its share meanwhile was processed here
        extra, last = iter(backlog(200, seed=7, bad_every=0)), [0.0]

        def restarted() -> bool:  # a file every half second, until it runs again
            if time.monotonic() - last[0] > 0.5:
                last[0] = time.monotonic()
                client, name, data, _ = next(extra)
                drop_atomically(root, client, f"after-{name}", data)
                good[f"after-{name}"] = (client, data)
                if client == "RANK":
                    rank.add(f"after-{name}")
            return workers(service.text())[2] != victim

        wait_for(restarted, timeout=RESTART_SECONDS + 30, what="worker 2 started again")
        wait_for(lambda: done(root, good, bad), timeout=60, what="the files after it processed")
    finally:
        assert service.stop() == 0
    assert "Traceback" not in service.text()
    assert_exactly_once(root, good, bad, rank, consumer, allowed=())


def in_a_group(settings: Path, log: Path) -> subprocess.Popen:
    """The service in a session (and process group) of its own: its group is signalled, not the test's."""
    command = [sys.executable, "-m", "json_workflow", "run", "--config", str(settings)]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
    try:
        wait_for(lambda: "Watching" in log.read_text(), what="the service to start")
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process


def test_the_whole_group_killed_mid_burst_is_finished_at_the_next_start(tmp_path, root):
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    settings, log = config(tmp_path, root), tmp_path / "group.log"
    process = in_a_group(settings, log)
    try:
        good, bad, rank = burst(root, 1000)
        started = wait_for(lambda: len(workers(log.read_text())) == 2 and workers(log.read_text()), timeout=30)
        wait_for(lambda: log.read_text().count("Successfully processed") >= 300, what="300 files processed")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert "Traceback" not in log.read_text()  # its workers, their pipe gone, leave at once and quietly
        # The workers die with it (each in a group of its own, so that a terminal's Ctrl-C is the service's)
        wait_for(lambda: not any(alive(pid) for pid in started.values()), timeout=5, what="the workers to die")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert list((root / "JSON" / ".processing").glob(".process-*"))  # their claim areas, left by the kill
    service = Service(root, settings, log=tmp_path / "again.log").start()
    try:
        wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed after the restart")
    finally:
        assert service.stop() == 0
    assert_exactly_once(root, good, bad, rank, consumer, allowed=())


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_group_stops_the_service_once_its_workers_are_drained(tmp_path, root, signal_name):
    """systemd signals the whole control group and a terminal's Ctrl-C the foreground group: the workers
    leave their stop to the service, which stops them once their batches are finished."""
    settings, log = config(tmp_path, root), tmp_path / "signal.log"
    process = in_a_group(settings, log)
    try:
        good, bad, _ = burst(root, 600)
        started = wait_for(lambda: len(workers(log.read_text())) == 2 and workers(log.read_text()), timeout=30)
        for pid in [process.pid, *started.values()]:
            os.kill(pid, getattr(signal, signal_name))
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in started.values()), timeout=5, what="the workers to end")
    text = log.read_text()
    assert "Traceback" not in text and "Worker process" not in text  # none died: each was stopped
    assert "json-workflow stopped" in text
    # What they had not finished waits in the hot folder or is finished at the next start: nothing is lost
    service = Service(root, settings, log=tmp_path / "again.log").start()
    try:
        wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed")
    finally:
        assert service.stop() == 0


def test_a_hung_worker_holds_up_a_stop_no_longer_than_shutdown_timeout_and_loses_nothing(tmp_path, root):
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    settings = config(tmp_path, root)
    settings.write_text(settings.read_text().replace("shutdown_timeout = 10", "shutdown_timeout = 3"))
    service = Service(root, settings).start()
    try:
        good, bad, rank = burst(root, 1000)
        pids = wait_for(lambda: len(workers(service.text())) == 2 and workers(service.text()), timeout=30)
        wait_for(lambda: service.text().count("Successfully processed") >= 100, what="100 files processed")
        os.kill(pids[2], signal.SIGSTOP)  # a worker stuck (a hung mount): the service waits for its answers
        asked = time.monotonic()
        assert service.stop() == 0
        assert time.monotonic() - asked < 3 + 5
        assert "Shutdown took over 3s; exiting now" in service.text()
        wait_for(lambda: not alive(pids[2]) and not alive(pids[3]), timeout=5, what="the workers to die with it")
        again = Service(root, settings, log=tmp_path / "again.log").start()
        try:
            wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed after the restart")
        finally:
            assert again.stop() == 0
    finally:
        for pid in workers(service.text()).values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert_exactly_once(root, good, bad, rank, consumer, allowed=())
