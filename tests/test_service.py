"""Service mode, as a real subprocess: real-time intake, stability, ordering, signals, crashes, reloads."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from conftest import (
    RANK_ROUTE,
    Consumer,
    Service,
    assert_each_once,
    drop_atomically,
    failed_entries,
    json_count,
    leftovers,
    read_or_none,
    wait_for,
    write_config,
)
from json_workflow.samples import backlog, job


@pytest.fixture(params=["inotify", "polling"])
def watch(request):
    return request.param


@pytest.fixture
def service(root, tmp_path, watch):
    s = Service(root, write_config(tmp_path / "config.toml", root, watch)).start()
    yield s
    s.stop(signal.SIGKILL) if s.process.poll() is None else None


def test_atomic_drops_are_archived_and_routed(service, root):
    data = job("RANK", "CELTRA", 1)
    drop_atomically(root, "RANK", "a.json", data)
    wait_for(lambda: (root / "JSON_STORE/RANK/a.json").exists(), what="the archive copy")
    assert (root / RANK_ROUTE / "a.json").read_bytes() == data
    wait_for(lambda: not (root / "JSON/RANK/a.json").exists(), what="the original to go")
    assert service.stop() == 0
    assert leftovers(root) == []


def test_slow_writer_is_taken_only_when_complete(service, root):
    data = job("LOREAL", "CAMPAIGN", 7, size=4000)
    (root / "JSON/LOREAL").mkdir(parents=True)
    with open(root / "JSON/LOREAL/slow.json", "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        # A witness, written after that half and hard-linked in: no event says it is complete (a link raises
        # only IN_CREATE), so it is taken once unchanged for stable_seconds, and the older half-written file is
        # by then stable as long. Its archive copy shows the service has had its chance to take the half.
        staged = root.parent / "witness.json"
        staged.write_bytes(job("LOREAL", "CAMPAIGN", 8))
        os.link(staged, root / "JSON/LOREAL/witness.json")
        wait_for(lambda: (root / "JSON_STORE/LOREAL/witness.json").exists(), what="the witness, taken once stable")
        assert not (root / "JSON_STORE/LOREAL/slow.json").exists()
        assert failed_entries(root, "slow.json") == []
        f.write(data[len(data) // 2 :])
    wait_for(lambda: (root / "JSON_STORE/LOREAL/slow.json").exists(), what="the archive copy")
    assert (root / "JSON_STORE/LOREAL/slow.json").read_bytes() == data
    assert failed_entries(root, "slow.json") == []


def test_last_of_five_versions_wins_everywhere(service, root):
    for version in range(5):
        drop_atomically(root, "RANK", "v.json", job("RANK", "CELTRA", version))
        time.sleep(0.05)
    last = job("RANK", "CELTRA", 4)
    places = [
        root / "JSON_STORE/RANK/v.json",
        root / RANK_ROUTE / "v.json",
        root / "SYNC/MAKE/Celtra - Create_Rename - Project_Design File/v.json",
    ]
    wait_for(
        lambda: all(read_or_none(p) == last for p in places) and not (root / "JSON/RANK/v.json").exists(),
        what="the last version everywhere",
    )
    # A stop finishes whatever is still in flight: an older version published late would show now.
    assert service.stop() == 0
    assert [read_or_none(p) for p in places] == [last] * len(places)


def test_client_folder_created_after_start_is_watched(root, tmp_path, watch):
    # The periodic scan is an hour off: only the watch can bring the new folder's files in.
    service = Service(root, write_config(tmp_path / "config.toml", root, watch, scan_interval=3600)).start()
    try:
        folder = root / "JSON/NEWCLIENT"
        folder.mkdir()
        (folder / "first.json").write_bytes(job("NEWCLIENT", "X", 1))
        wait_for(lambda: (root / "JSON_STORE/NEWCLIENT/first.json").exists(), what="the new client's first file")
        # The first file may have been found by the look inside the folder made when it appeared; that look is
        # over now, so the second one comes in only through the new folder's own watch.
        (folder / "second.json").write_bytes(job("NEWCLIENT", "X", 2))
        wait_for(lambda: (root / "JSON_STORE/NEWCLIENT/second.json").exists(), what="the new client's second file")
        wait_for(lambda: "[REALTIME] Processing: NEWCLIENT/second.json" in service.text(), what="its real-time source")
    finally:
        assert service.stop() == 0


def test_sigterm_exits_0_and_leaves_no_temporary(service, root):
    for n in range(30):
        drop_atomically(root, "RANK", f"{n}.json", job("RANK", "X", n))
    wait_for(lambda: (root / "JSON_STORE/RANK").exists(), what="processing to begin")
    assert service.stop(signal.SIGTERM) == 0
    assert leftovers(root) == []
    assert "json-workflow stopped" in service.text()


def test_destination_that_is_a_file_keeps_files_pending_until_fixed(service, root):
    blocker = root / RANK_ROUTE
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a folder")
    data = job("RANK", "X", 1)
    drop_atomically(root, "RANK", "p.json", data)
    drop_atomically(root, "LOREAL", "l.json", job("LOREAL", "X", 1))
    wait_for(lambda: (root / "JSON_STORE/LOREAL/l.json").exists(), what="the other client's file")
    wait_for(lambda: "Destination unavailable" in service.text(), what="the trouble to be logged")
    # Each retry claims it for a moment; between retries it waits in the hot folder, bytes intact.
    wait_for(lambda: read_or_none(root / "JSON/RANK/p.json") == data, what="the file back in the hot folder")
    assert failed_entries(root, "p.json") == []
    blocker.unlink()
    wait_for(lambda: (root / RANK_ROUTE / "p.json").exists(), timeout=20, what="delivery once fixed")
    assert (root / "JSON_STORE/RANK/p.json").read_bytes() == data
    assert service.text().count("Destination unavailable") <= 3  # once per retry of the folder, not per file


def test_sighup_applies_a_new_rule_and_keeps_the_old_ones_on_a_broken_file(service, root, tmp_path):
    config = service.config
    config.write_text(
        config.read_text() + '[[routes]]\nname = "Acme"\ndestination = "ACME/IN"\nwhen = { ClientCode = "ACME" }\n'
    )
    service.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "Configuration reloaded" in service.text(), what="the reload")
    drop_atomically(root, "ACME", "a.json", job("ACME", "X", 1))
    wait_for(lambda: (root / "ACME/IN/a.json").exists(), what="the new rule to deliver")
    config.write_text(config.read_text() + "[[routes]]\nname = 5\n")
    service.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reload failed" in service.text(), what="the broken reload to be reported")
    assert "routes[1].name" in service.text()
    drop_atomically(root, "ACME", "b.json", job("ACME", "X", 2))
    wait_for(lambda: (root / "ACME/IN/b.json").exists(), what="the old rules to still work")


@pytest.mark.slow  # 12-20 s: 3,000 files, a kill -9, a restart that drains the rest
@pytest.mark.parametrize("watch", ["inotify"])
def test_kill_9_during_a_backlog_then_restart_delivers_everything_once(root, tmp_path, watch):
    good, bad, rank = {}, {}, set()
    for client, name, data, valid in backlog(3000, seed=11, bad_every=100):
        target = root / "JSON" / client
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
        (good if valid else bad)[name] = (client, data)
        if valid and client == "RANK":
            rank.add(name)
    old = time.time() - 60
    for path in (root / "JSON").rglob("*.json"):
        os.utime(path, (old, old))  # at rest, as a backlog found at startup is
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    config = write_config(tmp_path / "config.toml", root, watch, "batch_size = 50\n")
    first = Service(root, config).start()
    wait_for(
        lambda: json_count(root / "JSON_STORE") > 500,
        timeout=60,
        what="part of the backlog",
    )
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = Service(root, config).start()
    try:
        wait_for(lambda: json_count(root / "JSON") == 0, timeout=120, what="the backlog to drain")
        wait_for(lambda: set(consumer.seen) == rank, timeout=20, what="the consumer to see every RANK file")
    finally:
        assert second.stop() == 0
        consumer.stop.set()
        consumer.join()
    assert_each_once(root, good, bad, consumer)
    assert leftovers(root) == []


def test_systemd_hears_ready_watchdog_and_stopping(root, tmp_path):
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(15)
        config = write_config(tmp_path / "config.toml", root)
        service = Service(root, config, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"}).start()
        heard = []
        while "READY=1" not in heard:
            heard.append(listener.recv(256).decode())
        while "WATCHDOG=1" not in heard:
            heard.append(listener.recv(256).decode())
        assert service.stop() == 0
        while "STOPPING=1" not in heard:
            heard.append(listener.recv(256).decode())


def test_sighup_storm_while_files_arrive_never_stalls_intake(root, tmp_path):
    # A signal handler that takes a lock the main loop holds at that instant deadlocks the loop.
    import threading

    service = Service(root, write_config(tmp_path / "config.toml", root)).start()
    stop = threading.Event()

    def storm():
        while not stop.is_set():
            service.process.send_signal(signal.SIGHUP)
            time.sleep(0.001)

    sender = threading.Thread(target=storm)
    sender.start()
    try:
        names = [f"{n}.json" for n in range(300)]
        for n, name in enumerate(names):
            drop_atomically(root, "RANK", name, job("RANK", "X", n))
            time.sleep(0.01)
        wait_for(
            lambda: all((root / "JSON_STORE/RANK" / name).exists() for name in names),
            timeout=60,
            what="every file, between reloads",
        )
        stop.set()
        sender.join()
        assert service.text().count("Configuration reloaded") >= 1
        drop_atomically(root, "RANK", "after.json", job("RANK", "X", 999))
        wait_for(lambda: (root / "JSON_STORE/RANK/after.json").exists(), what="a file after the storm")
    finally:
        stop.set()
        sender.join()
        assert service.stop() == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_a_burst_goes_in_larger_batches_and_a_lone_file_alone(root, tmp_path, processes):
    """batch_size bounds a batch while files trickle in; 200 or more ready at once (no one waits on a single
    file) go in batches of up to 50, in one process or shared among workers."""
    import sqlite3

    config = write_config(tmp_path / "config.toml", root, extra=f'processes = {processes}\n[store]\nurl = ""\n')
    service = Service(root, config).start()
    try:
        drop_atomically(root, "RANK", "lone.json", job("RANK", "X", 1))
        wait_for(lambda: json_count(root / "JSON_STORE") == 1, what="the lone file")
        staging = root.parent / "burst"
        staging.mkdir()
        for n in range(600):
            (staging / f"{n}.json").write_bytes(job("RANK", "X", n))
        for n in range(600):
            os.rename(staging / f"{n}.json", root / "JSON/RANK" / f"{n}.json")
        wait_for(lambda: json_count(root / "JSON_STORE") == 601, timeout=60, what="the burst")
    finally:
        assert service.stop() == 0
    with sqlite3.connect(root / "JSON_PARSER_STATE/journal.sqlite3") as db:
        sizes = [size for (size,) in db.execute("SELECT size FROM batches ORDER BY at")]
    assert sizes[0] == 1 and sum(sizes) == 601, sizes
    assert 10 < max(sizes) <= 50, sizes
