"""The dashboard's pages, /metrics and the health checks, served by a real service or `json-workflow dashboard`."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest

from conftest import Service, cli, drop, drop_atomically, wait_for, write_config
from json_workflow.samples import job
from web_client import csrf_of, post, request

REQUIRED = [
    "json_workflow_files_total",
    "json_workflow_copies_total",
    "json_workflow_file_seconds_bucket",
    "json_workflow_waiting_files",
    "json_workflow_claimed_files",
    "json_workflow_destination_up",
    "json_workflow_last_scan_timestamp_seconds",
    "json_workflow_scans_total",
    "json_workflow_report_last_sent_timestamp_seconds",
    "json_workflow_build_info",
]


@pytest.fixture
def service(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root, scan_interval=0.5)
    running = Service(root, config).start()
    yield running
    assert running.stop() == 0


def metric(text: str, name: str, **labels) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search("^" + pattern + "$", text, re.M)
    return float(found.group(1)) if found else None


def test_metrics_count_files_and_copies_and_pass_promtool(service, root, tmp_path):
    drop_atomically(root, "RANK", "a.json", job("RANK", "CELTRA", 1))
    drop_atomically(root, "LOREAL", "b.json", b"{")
    url = service.url + "metrics"

    def counted():
        text = request(url).body
        done = metric(text, "json_workflow_file_seconds_count") == 2
        return done and metric(text, "json_workflow_last_scan_timestamp_seconds") and text

    text = wait_for(counted, what="both files and a scan counted")
    assert metric(text, "json_workflow_files_total", client="RANK", outcome="archived") == 1
    assert metric(text, "json_workflow_files_total", client="_unknown", outcome="failed") == 0
    assert metric(text, "json_workflow_copies_total", rule="Monday Rank") == 1
    assert metric(text, "json_workflow_copies_total", rule="Monday RB") == 0
    assert metric(text, "json_workflow_file_seconds_count") == 2
    assert metric(text, "json_workflow_destination_up", rule="archive") == 1
    assert metric(text, "json_workflow_scans_total", outcome="completed") >= 1
    assert re.search(r'^json_workflow_build_info\{version="[^"]+"\} 1\.0$', text, re.M)
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert [n for n in REQUIRED if n not in names] == []
    assert metric(text, "json_workflow_report_last_sent_timestamp_seconds") == 0  # none sent yet: 0, an alert fires


def test_a_destination_in_trouble_is_down_in_metrics_and_degrades_readiness(service, root):
    blocked = root / "SYNC/MAKE/Monday Rank"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_bytes(b"")
    drop_atomically(root, "RANK", "a.json", job("RANK", "PRODUCTION", 1))
    url = service.url
    wait_for(
        lambda: metric(request(url + "metrics").body, "json_workflow_destination_up", rule="Monday Rank") == 0,
        what="Monday Rank down",
    )
    # Held until its retry (at most a second here), then tried again: waiting for its destination meanwhile.
    wait_for(lambda: metric(request(url + "metrics").body, "json_workflow_waiting_files") == 1, what="the file held")
    ready = request(url + "readyz")
    body = json.loads(ready.body)
    assert ready.status == 200 and body["status"] == "degraded"
    assert body["checks"]["destinations"]["in_trouble"][0]["folder"] == str(blocked)
    overview = request(url).body
    assert "in trouble" in overview and "exists and is not a folder" in overview


def test_readiness_fails_while_the_hot_folder_is_gone_and_liveness_stays(service, root, tmp_path):
    url = service.url
    assert request(url + "readyz").status == 200
    shutil.move(root / "JSON", tmp_path / "away")
    try:
        ready = wait_for(lambda: (r := request(url + "readyz")).status == 503 and r, what="not ready")
        assert json.loads(ready.body)["checks"]["hot_folder"]["status"] == "failing"
        assert request(url + "healthz").status == 200  # alive: restarting it would not bring the share back
    finally:
        shutil.move(tmp_path / "away", root / "JSON")
    wait_for(lambda: request(url + "readyz").status == 200, what="ready again")


def test_readiness_fails_while_the_store_cannot_be_written(service, root):
    url = service.url
    holder = sqlite3.connect(root / "JSON_PARSER_STATE/journal.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the journal's write lock
    try:
        ready = request(url + "readyz")
        store = json.loads(ready.body)["checks"]["store"]
        assert ready.status == 503 and store["status"] == "failing" and "locked" in store["detail"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert request(url + "readyz").status == 200


def test_file_history_pages_show_each_reception_with_rules_and_folders(service, root):
    drop_atomically(root, "RANK", "5903771.json", job("RANK", "CELTRA", 4711))
    url = service.url
    found = wait_for(lambda: "5903771" in (p := request(url + "files?q=4711").body) and p, what="the file found")
    row = re.search(r'href="/files/(\d+)"', found).group(1)
    page = request(url + f"files/{row}").body
    assert "Monday Rank" in page and str(root / "SYNC/MAKE/Monday Rank") in page
    assert "Celtra (eligible client)" in page and "startup" in page or "realtime" in page
    assert request(url + "files?q=%25").body.count('href="/files/') == 0  # a wildcard is a character


def test_retry_by_client_and_all_show_their_result(service, root):
    for client in ("LOREAL", "RANK"):
        drop_atomically(root, client, f"{client}.json", b"{")
    url = service.url
    wait_for(lambda: len(list((root / "JSON_FAILED").glob("*/*.json"))) == 2, what="two failed files")
    page = wait_for(lambda: (p := request(url + "failed").body).count('name="file"') == 2 and p, what="listed")
    reply = post(url, "/failed/retry", {"csrf": csrf_of(page), "client": "loreal"})
    result = request(url + reply.headers["location"].lstrip("/")).body
    assert "Retried 1 file" in result
    wait_for(lambda: not (root / "JSON/LOREAL/LOREAL.json").exists(), what="taken again")
    page = wait_for(lambda: (p := request(url + "failed").body).count('name="file"') == 2 and p, what="failed again")
    reply = post(url, "/failed/retry", {"csrf": csrf_of(page), "all": "1"})
    assert "Retried 2 files" in request(url + reply.headers["location"].lstrip("/")).body


def test_reports_kept_are_listed_and_shown(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    drop(root, "RANK", "a.json", job("RANK", "PRODUCTION", 1))
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    assert cli("report", "--config", str(config)).returncode == 0
    running = Service(root, config).start()
    try:
        listing = request(running.url + "reports").body
        name = re.search(r'href="/reports/(\d{4}-\d{2}-\d{2}\.html)"', listing).group(1)
        shown = request(running.url + f"reports/{name}")
        assert shown.status == 200 and "JSON Workflow Daily Report" in shown.body
        assert "default-src 'none'" in shown.headers["content-security-policy"]
    finally:
        running.stop()


def test_the_dashboard_alone_serves_the_store_and_its_retry_moves_files_back(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    drop(root, "LOREAL", "bad.json", b"{")
    drop(root, "RANK", "good.json", job("RANK", "PRODUCTION", 1))
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    log = tmp_path / "dashboard.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "json_workflow", "dashboard", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
    )
    try:
        url = wait_for(lambda: re.search(r"at (http://\S+/)", log.read_text()), what="the dashboard").group(1)
        assert "No service is running" in request(url).body
        ready = json.loads(request(url + "readyz").body)
        assert ready["status"] == "ok" and "service" in ready["checks"]
        text = request(url + "metrics").body
        assert metric(text, "json_workflow_files_total", client="LOREAL", outcome="failed") == 1
        page = request(url + "failed").body
        reply = post(url, "/failed/retry", {"csrf": csrf_of(page), "all": "1"})
        assert "Retried 1 file" in request(url + reply.headers["location"].lstrip("/")).body
        assert (root / "JSON/LOREAL/bad.json").read_bytes() == b"{"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
