"""What operators look at tells the truth, at once and by name: status, /metrics and the log, polled right
after an event, against a real service (or the dashboard alone) and a real store."""

from __future__ import annotations

import json
import os
import re
import time

from conftest import Service, cli, drop, drop_atomically, wait_for, write_config
from json_workflow.samples import job
from web_client import request

RANK = "SYNC/MAKE/Monday Rank"


def status(config) -> dict:
    return json.loads(cli("status", "--json", "--config", str(config)).stdout)


def test_status_names_every_failed_file_waiting(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    drop(root, "RANK", "broken.json", b"{")
    drop(root, None, "top.json", b"[]")
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    found = status(config)
    assert found["failed_files"] == 2
    by_name = {f["name"]: f for f in found["failed"]}
    assert set(by_name) == {"RANK/broken.json", "top.json"}
    broken = by_name["RANK/broken.json"]
    assert (broken["client"], broken["stage"]) == ("RANK", "parse") and broken["reason"].startswith("invalid JSON")
    assert re.fullmatch(rf"{root}/JSON_FAILED/RANK/\d{{8}}_\d{{6}}_broken\.json", broken["path"])
    assert by_name["top.json"]["client"] == "_unknown"
    text = cli("status", "--config", str(config)).stdout
    assert "  RANK/broken.json: parse: invalid JSON" in text and f"    -> {broken['path']}" in text


def test_status_shows_a_destination_in_trouble_and_back_within_a_second_and_counts_current(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    # Files that wait are tried again after 2 s, then 4 s: all three are held, and stay so, before the fix
    config.write_text(config.read_text().replace("retry_max_seconds = 1", "retry_max_seconds = 4"))
    blocked = root / RANK
    blocked.parent.mkdir(parents=True)
    blocked.write_bytes(b"")  # a file where the folder should be: the destination is in trouble
    service = Service(root, config).start()
    try:
        for n in range(3):
            drop_atomically(root, "RANK", f"{n}.json", job("RANK", "PRODUCTION", n))
        wait_for(lambda: "Destination unavailable" in service.text(), what="the service to know")
        known = time.monotonic()
        wait_for(lambda: _trouble(status(config)), what="status to show the destination in trouble")
        assert time.monotonic() - known < 1 + 1.5  # saved within a second; a status command takes one itself

        wait_for(lambda: (s := status(config))["live"]["pending"] == 3 and s["live"]["claimed"] == 0, what="counts")
        blocked.unlink()  # fixed
        wait_for(lambda: "is working again after" in service.text(), timeout=30, what="the recovery")
        known = time.monotonic()
        wait_for(lambda: not _trouble(status(config)), what="status to show it working")
        assert time.monotonic() - known < 1 + 1.5
        wait_for(lambda: len(list(blocked.iterdir())) == 3, what="the files that waited, delivered")
        found = wait_for(lambda: (s := status(config))["live"]["pending"] == 0 and s, what="nothing waiting")
        assert found["live"]["claimed"] == 0 and found["today"]["archived"] == 3
    finally:
        assert service.stop() == 0
    # The recovery is logged once: which destination, after how long, how many files then went out.
    [line] = [line for line in service.text().splitlines() if "is working again" in line]
    assert re.search(
        rf"Destination {RANK} is working again after \d+s: the 3 files that waited for it go out now", line
    )


def _trouble(found: dict) -> list:
    return [d for d in (found["live"] or {}).get("destinations", []) if d["state"] == "trouble"]


def test_metrics_tell_the_truth_before_anything_and_from_the_dashboard_alone(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    drop(root, None, "top.json", job("RANK", "PRODUCTION", 1))  # at the top of the hot folder: client RANK
    drop(root, "RANK", "r.json", job("RANK", "CELTRA", 2))
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    dashboard = Service(root, config)  # the dashboard alone, as beside a cron run
    import subprocess
    import sys

    dashboard.process = subprocess.Popen(
        [sys.executable, "-m", "json_workflow", "dashboard", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(dashboard.log, "ab"),
    )
    try:
        metrics = request(dashboard.url + "metrics").body
    finally:
        dashboard.stop()
    assert "json_workflow_last_scan_timestamp_seconds 0.0" in metrics  # never: an alert on its age fires
    assert "json_workflow_report_last_sent_timestamp_seconds 0.0" in metrics
    assert 'json_workflow_copies_total{rule="Monday Rank"} 2.0' in metrics
    assert 'json_workflow_copies_total{rule="Celtra (eligible client)"} 1.0' in metrics
    assert 'json_workflow_copies_total{rule="Monday RB"} 0.0' in metrics
    assert 'json_workflow_files_total{client="RANK",outcome="archived"} 2.0' in metrics
    stats = json.loads(cli("stats", "--json", "--config", str(config)).stdout)
    assert [(c["client"], c["processed"]) for c in stats["clients"]] == [("RANK", 2)]


def test_a_file_at_the_top_of_the_hot_folder_has_one_client_label_everywhere(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    service = Service(root, config).start()
    try:
        drop_atomically(root, "RANK", "r.json", job("RANK", "PRODUCTION", 1))
        (root / "JSON/top.json").write_bytes(job("RANK", "PRODUCTION", 2))
        wait_for(lambda: (root / "JSON_STORE/RANK/top.json").exists(), what="the file at the top archived")
        metrics = wait_for(
            lambda: (
                'json_workflow_files_total{client="RANK",outcome="archived"} 2.0'
                in (m := request(service.url + "metrics").body)
                and m
            ),
            what="both files counted",
        )
        found = status(config)
    finally:
        assert service.stop() == 0
    assert 'client="_unknown",outcome="archived"} 0.0' in metrics
    assert [(c["client"], c["processed"]) for c in found["today"]["clients"]] == [("RANK", 2)]
    stats = json.loads(cli("stats", "--json", "--config", str(config)).stdout)
    assert [(c["client"], c["processed"]) for c in stats["clients"]] == [("RANK", 2)]


def test_status_and_history_show_a_hostile_failed_path_escaped_never_raw(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    hostile = os.fsdecode(b"evil\nService: running, Nothing needs attention\xe2\x80\xae\xff.json")
    drop(root, "RANK", hostile, b"{")
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    text = cli("status", "--config", str(config)).stdout
    assert "\nService: running, Nothing needs attention" not in text  # no line forged by a file name
    assert "evil\\x0aService: running, Nothing needs attention\\u202e\\xff.json" in text
    found = status(config)
    [failed] = found["failed"]
    assert "\\x0a" in failed["path"] and "\\xff" in failed["path"] and "\n" not in failed["path"]
    json.dumps(failed, ensure_ascii=False).encode()  # valid UTF-8: no lone surrogate
    history = cli("history", "evil", "--config", str(config))
    assert "\nService: running" not in history.stdout and "failed file: " in history.stdout
    [record] = json.loads(cli("history", "evil", "--json", "--config", str(config)).stdout)
    assert "\\xff" in record["failed_as"] and "\n" not in record["failed_as"]
