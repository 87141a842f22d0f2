"""Copies to http(s) endpoints through the pipeline: sent once per version with its key before anything is
written, a file waiting while its endpoint is in trouble, failed when refused; exactly once across kill -9."""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import Service, cli, drop, drop_atomically, make_config, query, run, wait_for, write_config
from http_endpoint import Fault, http_endpoint
from json_workflow.routing.rules import Rule
from json_workflow.samples import job


@pytest.fixture
def endpoint(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("JW_TEST_TOKEN", "t0ken")
    caplog.set_level(logging.INFO, logger="json_workflow")
    with http_endpoint(tmp_path) as endpoint:
        yield endpoint


def hook(endpoint, name="Make", client="ACME", path="/in/{ClientCode}?sig=s3cret") -> dict:
    return {"name": name, "when": {"ClientCode": client}, "destination": endpoint.url + path,
            "token_env": "JW_TEST_TOKEN", "ca_file": str(endpoint.ca_file)}  # fmt: skip


def local(name="Local", client="ACME") -> dict:
    return {"name": name, "when": {"ClientCode": client}, "destination": "OUT"}


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def nothing_in(folder) -> bool:
    """No file (hidden temporaries included) anywhere below `folder` (its subfolders may be made)."""
    return not [p for p in folder.rglob("*") if not p.is_dir()]


def test_each_copy_reaches_the_endpoint_once_before_the_local_copies(root, endpoint, caplog):
    config = make_config(root, routes=[hook(endpoint), local()])
    files = {f"j{i}.json": job("ACME", "PRODUCTION", i) for i in range(3)}
    for name, data in files.items():
        drop(root, "ACME", name, data)
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (3, 0, 0)
    assert sorted(r.body for r in endpoint.requests) == sorted(files.values())
    assert {r.path for r in endpoint.requests} == {"/in/ACME?sig=s3cret"}
    assert len(endpoint.keys()) == 3 and all(r.headers["Authorization"] == "Bearer t0ken" for r in endpoint.requests)
    for name, data in files.items():
        assert (root / "OUT" / name).read_bytes() == data == (root / "JSON_STORE" / "ACME" / name).read_bytes()
    url = endpoint.url + "/in/ACME?sig=..."
    assert query(config, "SELECT rule, url, status FROM sent") == [("Make", url, 200)] * 3
    assert sorted(query(config, "SELECT rule, folder FROM routed")) == sorted(
        [("Local", str(root / "OUT"))] * 3 + [("Make", url)] * 3
    )
    assert "Routed to: Local, Make" in caplog.text and "s3cret" not in caplog.text
    history = cli("history", "j1.json", "--root", str(root)).stdout
    assert re.search(
        rf"    Make -> {re.escape(url)}  at .*\n    Make: {re.escape(url)} acknowledged it \(HTTP 200\) at ", history
    )


def test_an_endpoint_in_trouble_holds_its_files_and_the_same_key_goes_again(root, endpoint, caplog):
    config = make_config(root, routes=[hook(endpoint), local()])
    dropped = drop(root, "ACME", "j.json", job("ACME", "PRODUCTION", 1))
    endpoint.faults.append(Fault(503, {"Retry-After": "0"}, b"maintenance"))
    summary = run(config)
    assert (summary.archived, summary.pending) == (0, 1)
    assert dropped.exists() and nothing_in(root / "OUT") and nothing_in(root / "JSON_STORE")
    assert f"cannot send to {endpoint.url}/in/ACME?sig=...: HTTP 503: maintenance" in caplog.text
    assert run(config).archived == 1
    (first, again), keys = endpoint.requests, endpoint.keys()
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] and len(keys) == 1
    assert (root / "OUT" / "j.json").exists() and not dropped.exists()


def test_a_refusal_fails_the_file_with_the_endpoints_answer(root, endpoint):
    config = make_config(root, routes=[hook(endpoint), local()])
    drop(root, "ACME", "j.json", job("ACME", "PRODUCTION", 1))
    endpoint.faults.append(Fault(404, body=b"no such hook"))
    summary = run(config)
    assert (summary.archived, summary.failed) == (0, 1)
    (reason,) = (root / "JSON_FAILED" / "ACME").glob("*.reason.txt")
    text = reason.read_text()
    assert f'rule "Make": {endpoint.url}/in/ACME?sig=... refused it: HTTP 404: no such hook' in text
    assert "stage: deliver" in text and "s3cret" not in text
    assert nothing_in(root / "OUT") and nothing_in(root / "JSON_STORE")


def test_run_once_waits_for_room_when_more_files_are_on_their_way_than_the_senders_hold(root, endpoint, monkeypatch):
    from json_workflow.delivery import pipeline, remote

    monkeypatch.setattr(pipeline, "BATCH", 10)
    monkeypatch.setattr(pipeline, "ON_THE_WAY", 25)
    monkeypatch.setattr(remote, "ON_THE_WAY", 25)
    endpoint.usual = Fault(200, delay=0.05)  # slower than the batches come
    config = make_config(root, routes=[hook(endpoint)])
    for i in range(80):
        drop(root, "ACME", f"j{i}.json", job("ACME", "PRODUCTION", i))
    summary = run(config)
    assert (summary.archived, summary.pending) == (80, 0)
    assert len(endpoint.accepted()) == 80 == len(endpoint.requests)


def test_an_acknowledged_copy_is_not_sent_again_while_the_file_waits_for_another(root, endpoint):
    config = make_config(root, routes=[hook(endpoint, "A", path="/a"), hook(endpoint, "B", path="/b")])
    drop(root, "ACME", "j.json", job("ACME", "PRODUCTION", 1))
    endpoint.faults.extend([Fault(200), Fault(500)])  # one of the two in trouble
    first = run(config)
    assert first.pending == 1
    answered = {r.path: r.headers["Idempotency-Key"] for r in endpoint.requests}
    (ok,) = [url.removeprefix(endpoint.url) for (url,) in query(config, "SELECT url FROM sent")]
    assert run(config).archived == 1
    paths = [r.path for r in endpoint.requests]
    assert paths.count(ok) == 1 and len(paths) == 3  # the acknowledged one once; the other twice, same key
    assert {r.headers["Idempotency-Key"] for r in endpoint.requests} == set(answered.values())


def test_kill_9_at_any_moment_then_a_rerun_sends_each_copy_once_per_key(root, tmp_path, endpoint):
    """run --once killed again and again while it sends 300 files (on every core); then run to the end."""
    toml = tmp_path / "c.toml"
    toml.write_text(
        f'root = "{root}"\n[[routes]]\nname = "Make"\nwhen = {{ ClientCode = "ACME" }}\n'
        f'destination = "{endpoint.url}/in"\ntoken_env = "JW_TEST_TOKEN"\nca_file = "{endpoint.ca_file}"\n'
        f'[[routes]]\nname = "Local"\nwhen = {{ ClientCode = "ACME" }}\ndestination = "OUT"\n'
    )
    files = {f"j{i:03}.json": job("ACME", "PRODUCTION", i) for i in range(300)}
    for name, data in files.items():
        drop(root, "ACME", name, data)
    endpoint.usual = Fault(200, delay=0.002)
    command = [sys.executable, "-m", "json_workflow", "run", "--once", "--config", str(toml), "--quiet"]
    kills, rng = 0, random.Random(7)
    for _ in range(4):
        process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.2))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    by_key = endpoint.keys()
    accepted = endpoint.accepted()
    assert sorted(r.body for r in accepted) == sorted(files.values())  # each file's copy once, per key
    assert len(by_key) == len(files) and "" not in by_key  # no key missing, one key per file
    # Sent again only what was in flight at a kill: `concurrency` at once in each process (processes = "auto")
    in_flight = Rule.model_fields["concurrency"].default * min(8, len(os.sched_getaffinity(0)))
    assert sum(by_key.values()) - len(by_key) <= kills * in_flight
    for name, data in files.items():
        assert (root / "OUT" / name).read_bytes() == data == (root / "JSON_STORE" / "ACME" / name).read_bytes()
    assert not list((root / "JSON" / "ACME").iterdir())


def test_the_service_holds_a_file_for_its_endpoint_no_sooner_than_it_asked_and_no_other(root, tmp_path, endpoint):
    (root / "JSON" / "ACME").mkdir()
    routes = (f'[[routes]]\nname = "Make"\nwhen = {{ ClientCode = "ACME" }}\n'
              f'destination = "{endpoint.url}/in?sig=zq9"\ntoken_env = "JW_TEST_TOKEN"\n'
              f'ca_file = "{endpoint.ca_file}"\n')  # fmt: skip
    endpoint.faults.append(Fault(503, {"Retry-After": "2"}))
    service = Service(root, write_config(tmp_path / "c.toml", root, extra=routes), {"JW_TEST_TOKEN": "t0ken"}).start()
    try:
        data = job("ACME", "PRODUCTION", 1)
        drop_atomically(root, "ACME", "j.json", data)
        wait_for(lambda: endpoint.requests, what="the first request")
        metrics = service.url + "metrics"
        trouble = ['json_workflow_destination_up{rule="Make"} 0.0', 'destination_waiting_files{rule="Make"} 1.0']
        wait_for(lambda: all(line in scrape(metrics) for line in trouble), timeout=1.8, what="the trouble in /metrics")
        drop_atomically(root, "OTHER", "o.json", job("OTHER", "PRODUCTION", 1))  # routed to no URL: not held
        wait_for(lambda: (root / "JSON_STORE" / "OTHER" / "o.json").exists(), timeout=1.5, what="the other file")
        wait_for(lambda: (root / "JSON_STORE" / "ACME" / "j.json").exists(), timeout=20, what="the file, once sent")
        first, again = endpoint.requests
        assert again.at - first.at >= 2.0 and first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"]
        assert again.body == data and [r.body for r in endpoint.accepted()] == [data]
        wait_for(lambda: "is working again" in service.text(), what="the endpoint said to work again")
        found = scrape(service.url + "files?q=j.json")
        page = scrape(service.url + "files/" + re.search(r'href="/files/(\d+)"', found).group(1))
        assert f"{endpoint.url}/in?sig=...</span> (HTTP 200) at " in page and "zq9" not in page
        after = scrape(metrics)
        assert 'json_workflow_send_seconds_count{rule="Make"} 2.0' in after
        assert 'json_workflow_destination_up{rule="Make"} 1.0' in after
        assert 'json_workflow_destination_waiting_files{rule="Make"} 0.0' in after
    finally:
        assert service.stop() == 0


def test_a_hung_endpoint_holds_only_its_own_files(root, tmp_path):
    """An endpoint that accepts connections and never answers: the files routed only to folders go on."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/in"
        routes = (f'[[routes]]\nname = "Hung"\nwhen = {{ ClientCode = "ACME" }}\ndestination = "{url}"\n'
                  'timeout = 20\n[[routes]]\nname = "Local"\nwhen = { ClientCode = ["ACME", "OTHER"] }\n'
                  'destination = "OUT"\n')  # fmt: skip
        (root / "JSON" / "ACME").mkdir()
        service = Service(root, write_config(tmp_path / "c.toml", root, extra=routes)).start()
        try:
            drop_atomically(root, "ACME", "a.json", job("ACME", "PRODUCTION", 1))
            wait_for(lambda: "Processing: ACME/a.json" in service.text(), what="the file sent to the hung endpoint")
            for i in range(5):
                drop_atomically(root, "OTHER", f"o{i}.json", job("OTHER", "PRODUCTION", i))
                wait_for(lambda i=i: (root / "OUT" / f"o{i}.json").exists(), timeout=2, what="a folder-only file")
            claimed = list((root / "JSON" / ".processing" / "ACME").glob("*_a.json"))
            assert not (root / "OUT" / "a.json").exists() and len(claimed) == 1  # still on its way
        finally:
            assert service.stop(signal.SIGKILL) == -signal.SIGKILL


def test_replay_knows_a_copy_an_endpoint_acknowledged_and_apply_leaves_urls_alone(root, tmp_path, endpoint):
    (root / "JSON" / "ACME").mkdir()
    toml = tmp_path / "new.toml"
    toml.write_text(
        f'root = "{root}"\n[[routes]]\nname = "Make"\nwhen = {{ ClientCode = "ACME" }}\n'
        f'destination = "{endpoint.url}/in?sig=s3cret"\ntoken_env = "JW_TEST_TOKEN"\nca_file = "{endpoint.ca_file}"\n'
    )
    old = tmp_path / "old.toml"
    old.write_text(
        f'root = "{root}"\n[[routes]]\nname = "Local"\nwhen = {{ ClientCode = "NOBODY" }}\ndestination = "OUT"\n'
    )
    env = {"JW_TEST_TOKEN": "t0ken"}
    drop(root, "ACME", "sent.json", job("ACME", "PRODUCTION", 1))
    assert cli("run", "--once", "--config", str(toml), env=env).returncode == 0
    (root / "JSON_STORE" / "ACME" / "archived.json").write_bytes(job("ACME", "PRODUCTION", 2))  # never sent
    url = f"{endpoint.url}/in?sig=..."
    dry = cli("replay", "--config", str(toml), "--from", str(old), env=env).stdout
    assert f'JSON_STORE/ACME/archived.json\n  + {url}  (rule "Make")' in dry, dry
    assert "2 archived files read, 1 would change, 1 added copy delivered already" in dry and "s3cret" not in dry
    applied = cli("replay", "--apply", "--config", str(toml), "--from", str(old), env=env).stdout
    assert f"left alone {url}/archived.json: replay --apply does not send to URLs yet" in applied, applied
    assert len(endpoint.requests) == 1
