"""Several instances on one data root with a PostgreSQL store: claims of their own, takeover, fencing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from conftest import (
    FAILED_NAME,
    Consumer,
    Service,
    assert_exactly_once,
    cli,
    drop,
    failed_entries,
    wait_for,
    write_config,
)
from json_workflow.samples import backlog
from web_client import request

RANK_ROUTE = "SYNC/MAKE/Monday Rank"
LEASE = 3  # seconds: a dead instance is taken over within about four


def fleet_config(tmp: Path, root: Path, url: str, instance: str, watch: str = "inotify", extra: str = "") -> Path:
    return write_config(
        tmp / f"{instance}.toml",
        root,
        watch=watch,
        extra=f'instance = "{instance}"\nworkers = 2\n{extra}\n[store]\nurl = "{url}"\nlease_seconds = {LEASE}\n',
    )


def start(tmp: Path, root: Path, url: str, instance: str, **kwargs) -> Service:
    return Service(root, fleet_config(tmp, root, url, instance, **kwargs), log=tmp / f"{instance}.log").start()


def two_instances(tmp_path: Path, root: Path, pg_server) -> tuple[str, Consumer, Service, Service]:
    """A new database, a downstream consumer of the RANK folder, and instances a and b on the root."""
    url = pg_server.database()
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    return url, consumer, start(tmp_path, root, url, "a"), start(tmp_path, root, url, "b")


def burst(root: Path, count: int, seed: int = 3):
    """Drop `count` files (one in 50 invalid); returns (good, bad, rank names)."""
    good, bad, rank = {}, {}, set()
    for client, name, data, valid in backlog(count, seed=seed, bad_every=50):
        drop(root, client, name, data)
        (good if valid else bad)[name] = (client, data)
        if valid and client == "RANK":
            rank.add(name)
    return good, bad, rank


def archived(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root / "JSON_STORE"))


def done(root: Path, good: dict, bad: dict) -> bool:
    return archived(root) >= len(good) and all(failed_entries(root, name) for name in bad)


def test_a_second_process_of_one_instance_is_refused(tmp_path, root, pg_server):
    url = pg_server.database()
    first = start(tmp_path, root, url, "a")
    try:
        result = cli("run", "--config", str(fleet_config(tmp_path, root, url, "a")), timeout=30)
        assert result.returncode != 0
        assert "instance a is already running" in result.stderr
    finally:
        assert first.stop() == 0


def test_two_instances_share_a_burst_and_one_killed_is_taken_over(tmp_path, root, pg_server):
    good, bad, rank = {}, {}, set()
    url, consumer, a, b = two_instances(tmp_path, root, pg_server)
    try:
        good, bad, rank = burst(root, 1500)
        wait_for(lambda: archived(root) >= 200, timeout=60, what="200 files archived")
        a.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: "[TAKEOVER] Took over instance a" in b.text(), timeout=60, what="b to take over a")
        assert time.monotonic() - killed_at < 60
        wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed")
    finally:
        b.stop()
        a.stop(signal.SIGKILL)
    assert_exactly_once(root, good, bad, rank, consumer)
    with psycopg.connect(url) as db:
        by_instance = dict(db.execute("SELECT instance, COUNT(*) FROM files GROUP BY instance").fetchall())
    assert set(by_instance) == {"a", "b"}


def metric(text: str, metric_name: str, **labels) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search("^" + re.escape(metric_name) + r"\{" + re.escape(wanted) + r"\} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def test_status_stats_dashboard_and_metrics_show_the_fleet_and_each_instance(tmp_path, root, pg_server):
    url = pg_server.database()
    a, b = start(tmp_path, root, url, "a"), start(tmp_path, root, url, "b")
    config_a = str(tmp_path / "a.toml")
    try:
        good, bad, _ = burst(root, 100)
        wait_for(lambda: done(root, good, bad), what="the files processed")
        status = json.loads(cli("status", "--json", "--config", config_a).stdout)
        assert status["instance"] == "a" and status["running"] == "service"
        fleet = {i["name"]: i for i in status["fleet"]}
        assert fleet["a"]["alive"] and fleet["b"]["alive"]
        assert fleet["a"]["processed_today"] + fleet["b"]["processed_today"] == 100

        def fleet_in_metrics() -> str | None:
            text = request(a.url + "metrics").body
            return text if metric(text, "json_workflow_fleet_instance_up", name="b") == 1 else None

        text = wait_for(fleet_in_metrics, what="b in a's metrics")
        assert metric(text, "json_workflow_instance_info", name="a", store="postgresql") == 1
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        page = request(a.url).body
        assert "Fleet" in page and "2 of 2 instances running" in page
        stats = cli("stats", "--config", config_a)
        assert re.search(r"Files by instance: +a \d+.*, b \d+", stats.stdout), stats.stdout
        b.stop(signal.SIGKILL)
        wait_for(lambda: "[TAKEOVER] Took over instance b" in a.text(), timeout=60, what="a to take over b")
        status = json.loads(cli("status", "--json", "--config", config_a).stdout)
        b_now = next(i for i in status["fleet"] if i["name"] == "b")
        assert not b_now["alive"] and b_now["taken_by"] == "a"
        text = request(a.url + "metrics").body
        assert metric(text, "json_workflow_fleet_instance_up", name="b") == 0
        assert "b: stopped" in cli("status", "--config", config_a).stdout
    finally:
        a.stop()
        b.stop(signal.SIGKILL)


@pytest.fixture
def view(tmp_path, root):
    """The data root as a second host sees a share: a bindfs view, where the other's writes raise no inotify event."""
    mount = tmp_path / "view"
    mount.mkdir()
    subprocess.run(["bindfs", "--no-allow-other", str(root), str(mount)], check=True, capture_output=True, timeout=10)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True, timeout=10)


@pytest.mark.root
@pytest.mark.slow  # a 5,000-file burst on two hosts, five kills: about a minute
def test_a_burst_on_two_hosts_loses_nothing_and_doubles_nothing_through_five_kills(tmp_path, root, view, pg_server):
    """Instance a sees the root (inotify), b the bindfs view (polling, as on a share). Five times, at a
    different point of the burst, one of them is killed -9: the other takes its claims over, and the
    killed one starts again and rejoins (with an empty claim area) before the next kill."""
    url = pg_server.database()
    consumer = Consumer(root / RANK_ROUTE)
    consumer.start()
    good, bad, rank = burst(root, 2000)  # dropped first, so that both instances share it from their start

    def launch(name: str, incarnation: int) -> Service:
        on, watch = (view, "polling") if name == "b" else (root, "inotify")
        config = fleet_config(tmp_path, on, url, name, watch=watch)
        return Service(on, config, log=tmp_path / f"{name}-{incarnation}.log").start()

    services = {"b": launch("b", 0), "a": launch("a", 0)}
    try:
        for kill, moment in enumerate([0.1, 0.25, 0.4, 0.55, 0.7], start=1):
            name, other = ("a", "b") if kill % 2 else ("b", "a")
            wait_for(lambda m=moment: archived(root) >= m * len(good), timeout=120, what=f"{moment:.0%} archived")
            victim, survivor = services[name], services[other]
            assert victim.process.poll() is None, f"instance {name} stopped by itself"
            victim.stop(signal.SIGKILL)
            wait_for(
                lambda s=survivor, n=name: f"[TAKEOVER] Took over instance {n}" in s.text(),
                timeout=60,
                what=f"{other} to take over {name} (kill {kill})",
            )
            services[name] = launch(name, kill)
        wait_for(lambda: done(root, good, bad), timeout=180, what="every file processed")
    finally:
        for service in services.values():
            service.stop()
    assert_exactly_once(root, good, bad, rank, consumer)


def test_a_terminated_store_connection_mid_burst_loses_nothing_and_doubles_nothing(tmp_path, root, pg_server):
    url, consumer, a, b = two_instances(tmp_path, root, pg_server)
    try:
        good, bad, rank = burst(root, 2000)
        wait_for(lambda: archived(root) >= 300, timeout=60, what="300 files archived")
        with psycopg.connect(url) as db:  # every connection of instance a: its pipeline's, its lease's, ...
            ended = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'json-workflow a %'"
            ).fetchall()
        assert len(ended) >= 2
        wait_for(lambda: "Holding the lease of instance a again" in a.text(), what="a to hold its lease again")
        wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed")
        assert a.process.poll() is None and b.process.poll() is None  # a reconnected: nobody took it over
    finally:
        assert a.stop() == 0 and b.stop() == 0
    assert "[TAKEOVER]" not in a.text() + b.text()
    assert "Unexpected error" not in a.text()
    assert_exactly_once(root, good, bad, rank, consumer)


def test_files_wait_while_the_store_is_down_and_flow_when_it_is_back(tmp_path, root, pg_server):
    url, consumer, a, b = two_instances(tmp_path, root, pg_server)
    try:
        good, bad, rank = burst(root, 1000)
        wait_for(lambda: archived(root) >= 200, timeout=60, what="200 files archived")
        pg_server.stop()
        try:
            down = archived(root)
            time.sleep(LEASE * 2)  # the outage itself: nothing to poll for
            assert archived(root) - down < 300  # at most the batches in flight finished
            failed = [FAILED_NAME.match(p.name).group(3) for p in (root / "JSON_FAILED").rglob("*.json")]
            assert set(failed) <= set(bad)  # the valid files wait: none failed for the store's sake
            assert a.process.poll() is None and b.process.poll() is None  # still running, retrying
        finally:
            pg_server.start()
        wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed after the restart")
    finally:
        a.stop()
        b.stop()
    assert_exactly_once(root, good, bad, rank, consumer)


def test_a_fleet_without_psycopg_installed_says_what_to_install_and_exits_1(tmp_path, root):
    config = fleet_config(tmp_path, root, "postgresql://jw@/nowhere", "a")
    blocked = "import sys; sys.modules['psycopg'] = None; from json_workflow.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "run", "--once", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "psycopg is not installed: pip install 'json-workflow[postgresql]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_hung_instance_is_taken_over_and_fenced_when_it_wakes(tmp_path, root, pg_server):
    """SIGSTOP: its lock stays held by its open session, its lease goes stale; the other ends that session,
    takes its claims over; woken, it publishes nothing more, stops (exit 75) and leaves the claims to the taker."""
    url, consumer, a, b = two_instances(tmp_path, root, pg_server)
    try:
        good, bad, rank = burst(root, 3000)
        wait_for(lambda: archived(root) >= 300, timeout=60, what="300 files archived")
        a.process.send_signal(signal.SIGSTOP)
        stopped = int(time.time())
        wait_for(lambda: "[TAKEOVER] Took over instance a" in b.text(), timeout=60, what="b to take over a")
        assert "holds its lock: ended its sessions" in b.text()
        asleep = len(a.text())
        a.process.send_signal(signal.SIGCONT)
        assert a.process.wait(timeout=60) == 75
        woken = a.text()[asleep:]  # fenced: one warning, no error, no file finished, then exit 75
        warnings = [line for line in woken.splitlines() if " - WARNING - " in line]
        assert warnings == [w for w in warnings if "Stopping (exit 75): instance a was taken over by b" in w]
        assert len(warnings) == 1, woken
        assert " - ERROR - " not in woken and "Traceback" not in woken
        # A batch committed just before the stop may be logged once woken, stamped with its commit's time
        finished = re.findall(r"^(\S+ \S+) - INFO - .*(?:Successfully processed|Failed )", woken, re.M)
        assert all(time.mktime(time.strptime(at, "%Y-%m-%d %H:%M:%S")) <= stopped for at in finished), woken
        # The taker names the files it finished as everywhere else: CLIENT/name.json (when a had claims)
        taken = re.findall(r"\[(?:RECOVERY|TAKEOVER)\] \w+:? (\S+\.json)", b.text())
        assert all(re.fullmatch(r"[A-Z0-9]+/[^/]+\.json", name) for name in taken), taken
        wait_for(lambda: done(root, good, bad), timeout=120, what="every file processed")
    finally:
        a.process.send_signal(signal.SIGCONT)
        a.stop(signal.SIGKILL)
        assert b.stop() == 0
    assert_exactly_once(root, good, bad, rank, consumer)
    with psycopg.connect(url) as db:  # the files the taker finished have their facts too (history by job number)
        assert db.execute("SELECT name FROM files WHERE outcome = 'archived' AND job IS NULL").fetchall() == []
