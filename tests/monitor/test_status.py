"""`json-workflow status` and `history` against a real service and a real store."""

from __future__ import annotations

import json

from conftest import Service, cli, drop_atomically, wait_for, write_config
from json_workflow.samples import job


def status(config) -> tuple[int, dict]:
    done = cli("status", "--json", "--config", str(config))
    return done.returncode, json.loads(done.stdout)


def test_status_without_a_service_exits_3_and_says_so(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    done = cli("status", "--config", str(config))
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("Service: not running")
    assert not (root / "JSON_PARSER_STATE").exists()  # looking creates nothing


def test_status_of_a_running_service_exits_0_then_1_for_a_failed_file_or_a_destination_in_trouble(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    service = Service(root, config).start()
    try:
        code, found = wait_for(lambda: (s := status(config))[1]["running"] == "service" and s, what="the live state")
        assert code == 0 and found["attention"] == []
        assert found["live"]["watch"] == "inotify" and found["pid"] == service.process.pid
        drop_atomically(root, "LOREAL", "bad.json", b"{")
        code, found = wait_for(lambda: (s := status(config))[1]["failed_files"] == 1 and s, what="the failed file")
        assert code == 1 and "1 failed file waits" in found["attention"][0]
        (root / "JSON_FAILED/LOREAL").rename(tmp_path / "taken")  # an operator dealt with it by hand
        blocked = root / "SYNC/MAKE/Monday Rank"
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_bytes(b"")
        drop_atomically(root, "RANK", "r.json", job("RANK", "PRODUCTION", 1))

        def in_trouble():
            code, found = status(config)
            return found["live"] and [d for d in found["live"]["destinations"] if d["state"] == "trouble"] and found

        found = wait_for(in_trouble, what="the destination in trouble")
        assert status(config)[0] == 1
        assert found["failed_files"] == 0
        text = cli("status", "--config", str(config)).stdout
        assert f"Monday Rank -> {blocked}: IN TROUBLE since" in text and "waiting for a destination" in text
    finally:
        assert service.stop() == 0
    assert status(config)[0] == 3


def test_history_finds_a_file_by_job_number_with_its_rules_and_folders(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    drop_atomically(root, "RANK", "5903771.json", job("RANK", "PRODUCTION", 4242))
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    done = cli("history", "4242", "--config", str(config))
    assert done.returncode == 0
    assert "RANK/5903771.json" in done.stdout and f"Monday Rank -> {root}/SYNC/MAKE/Monday Rank" in done.stdout
    [record] = json.loads(cli("history", "5903771", "--json", "--config", str(config)).stdout)
    assert (record["outcome"], record["job"], record["source"]) == ("archived", "4242", "STARTUP")
    missing = cli("history", "nothing-like-it", "--config", str(config))
    assert missing.returncode == 1 and "No file" in missing.stdout
