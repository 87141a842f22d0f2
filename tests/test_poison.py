"""Poison files: whatever one file holds or is called, it costs that file at most, never the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXED_NOW, cli, failed_entries, leftovers, read_reason
from json_workflow.config import build
from json_workflow.delivery.pipeline import Pipeline
from json_workflow.delivery.processes import SHARED_FROM, share
from json_workflow.intake.scan import scan
from json_workflow.run import exclusive, run_once
from json_workflow.samples import job

RANK_ROUTE = "SYNC/MAKE/Monday Rank"
LATIN1 = b"caf\xe9 \xabcopy\xbb.json"  # a name written by a Samba or FTP client in Latin-1


def drop_bytes(folder: Path, name: bytes, data: bytes) -> bytes:
    """Write a file whose name is raw bytes (not necessarily UTF-8); returns its path as bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def names_in(folder: Path) -> set[bytes]:
    return set(os.listdir(os.fsencode(folder))) if folder.is_dir() else set()


def with_detail(field: str, json_text: str) -> bytes:
    """A valid RANK job whose JobDetails `field` is the raw JSON text given."""
    details = {"ClientCode": "RANK", "JobCategory": "X", field: "@@"}
    return json.dumps({"JobSpecification": {"JobDetails": details}}).replace('"@@"', json_text).encode()


def test_names_that_are_not_utf8_are_delivered_failed_logged_and_counted(root):
    good, bad = job("RANK", "CELTRA", 1), b'{"broken": '
    drop_bytes(root / "JSON/RANK", LATIN1, good)
    drop_bytes(root / "JSON/RANK", b"bad \xe9.json", bad)
    drop_bytes(root / "JSON", b"top \xff.json", job("LOREAL", "X", 2))
    drop_bytes(root / "JSON" / os.fsdecode(b"CLI\xc9NT"), b"x.json", job("CLIENT", "X", 3))
    drop_bytes(root / "JSON/RANK", b"ok.json", job("RANK", "X", 4))

    summary = run_once(build({}, "t", root=root))

    assert (summary.archived, summary.failed, summary.pending) == (3, 2, 0)
    for folder in ("JSON_STORE/RANK", RANK_ROUTE, "SYNC/MAKE/Celtra - Create_Rename - Project_Design File"):
        assert LATIN1 in names_in(root / folder)
        assert Path(os.fsdecode(os.path.join(os.fsencode(root / folder), LATIN1))).read_bytes() == good
    assert b"top \xff.json" in names_in(root / "JSON_STORE/LOREAL")
    (failed,) = [n for n in names_in(root / "JSON_FAILED/RANK") if n.endswith(b"_bad \xe9.json")]
    failed_path = root / "JSON_FAILED/RANK" / os.fsdecode(failed)
    assert failed_path.read_bytes() == bad
    reason = read_reason(failed_path)  # UTF-8 text, the name escaped and whole
    assert (reason["file"], reason["name"], reason["stage"]) == ("RANK/bad \\xe9.json", "bad \\xe9.json", "parse")
    # A client folder whose name is not UTF-8 cannot match a ClientCode: its file is failed, not a crash.
    (client_failed,) = names_in(root / "JSON_FAILED" / os.fsdecode(b"CLI\xc9NT")) - {
        n for n in names_in(root / "JSON_FAILED" / os.fsdecode(b"CLI\xc9NT")) if n.endswith(b".reason.txt")
    }
    assert client_failed.endswith(b"_x.json")
    assert leftovers(root) == []
    log = (root / "JSON_PARSER_LOGS/json_workflow.log").read_bytes() if (root / "JSON_PARSER_LOGS").exists() else b""
    stats = cli("stats", "--json", "--root", str(root))
    assert stats.returncode == 0, stats.stderr
    figures = json.loads(stats.stdout)
    assert figures["processed"] == 5 and figures["errors"] == 2 and figures["reconciled"]
    assert {p["name"] for p in figures["last_errors"]} == {"RANK/bad \\xe9.json", "CLI\\xc9NT/x.json"}
    log.decode("utf-8")


def test_the_cli_shows_such_names_without_failing(root):
    drop_bytes(root / "JSON/RANK", b"bad \xe9.json", b"{")
    once = cli("run", "--once", "--root", str(root))
    assert once.returncode == 0, once.stderr
    assert "RANK/bad \\xe9.json" in once.stderr
    retried = cli("retry", "--root", str(root))
    assert retried.returncode == 0, retried.stderr
    assert "bad \\xe9.json" in retried.stdout and "Retried 1 file" in retried.stdout
    assert b"bad \xe9.json" in names_in(root / "JSON/RANK")
    explained = cli(
        "explain", "--root", str(root), os.fsdecode(os.path.join(os.fsencode(root / "JSON/RANK"), b"bad \xe9.json"))
    )
    assert explained.returncode == 0, explained.stderr
    assert "bad \\xe9.json" in explained.stdout and "rejected at parse" in explained.stdout


@pytest.mark.parametrize(
    "field, text",
    [
        ("Quantity", "NaN"),
        ("Quantity", "-Infinity"),
        ("Quantity", "9" * 5000),
        ("ClientCode", '"\\ud800"'),
        ("JobCategory", '"\\udfff"'),
        ("Title", '"a\\ud83d"'),
    ],
)
def test_poison_content_fails_its_file_and_the_run_goes_on(root, field, text):
    data = with_detail(field, text)
    if field == "ClientCode":
        data = data.replace(b'"ClientCode": "RANK", ', b"")
    (root / "JSON/RANK").mkdir()
    (root / "JSON/RANK/poison.json").write_bytes(data)
    (root / "JSON/RANK/after.json").write_bytes(job("RANK", "X", 1))
    summary = run_once(build({}, "t", root=root), clock=lambda: FIXED_NOW)
    assert (summary.archived, summary.failed) == (1, 1)
    (failed,) = failed_entries(root, "poison.json")
    assert failed.read_bytes() == data
    assert (root / "JSON_STORE/RANK/after.json").exists() and (root / RANK_ROUTE / "after.json").exists()
    assert leftovers(root) == []


def test_a_lone_surrogate_client_code_at_the_top_fails_before_any_path_is_built(root):
    data = with_detail("Title", '"T"').replace(b'"RANK"', b'"\\ud800"')
    (root / "JSON/poison.json").write_bytes(data)
    summary = run_once(build({}, "t", root=root))
    assert summary.failed == 1
    (failed,) = failed_entries(root, "poison.json")
    assert failed.parent.name == "_unknown" and failed.read_bytes() == data
    assert os.listdir(root / "JSON_STORE") == [] if (root / "JSON_STORE").exists() else True


def test_an_error_no_one_foresaw_fails_that_file_only(root, monkeypatch):
    # A bug met by one file (injected here into routing) costs that file, not its batch or the run.
    from json_workflow.routing.route import Router

    plan = Router.plan

    def buggy(self, job):
        if job.details.get("JobNumber") == 13:
            raise KeyError("a case no one foresaw")
        return plan(self, job)

    monkeypatch.setattr(Router, "plan", buggy)
    (root / "JSON/RANK").mkdir()
    for n in range(20):
        (root / "JSON/RANK" / f"{n}.json").write_bytes(job("RANK", "X", n))
    summary = run_once(build({}, "t", root=root))
    assert (summary.archived, summary.failed) == (19, 1)
    (failed,) = failed_entries(root, "13.json")
    reason = read_reason(failed)
    assert reason["stage"] == "parse" and "unexpected error (KeyError" in reason["reason"]
    assert len(os.listdir(root / RANK_ROUTE)) == 19


def test_an_error_while_writing_fails_the_file_when_it_is_taken_again(root, monkeypatch):
    from json_workflow.delivery import stages

    write = stages.write

    def buggy(d, *args):
        if d.candidate.name == "7.json" and d.rejection is None:  # a bug in making its copies
            raise TypeError("a case no one foresaw")
        return write(d, *args)

    monkeypatch.setattr(stages, "write", buggy)
    (root / "JSON/RANK").mkdir()
    for n in range(10):
        (root / "JSON/RANK" / f"{n}.json").write_bytes(job("RANK", "X", n))
    config = build({}, "t", root=root)
    with exclusive(config) as journal:
        pipeline = Pipeline(config, journal)
        try:
            first = pipeline.process((c, "STARTUP") for c in scan(config.hot))
            assert (first.archived, first.pending) == (9, 1)
            # Nothing of it was published: it waits in the hot folder, whole.
            assert (root / "JSON/RANK/7.json").read_bytes() == job("RANK", "X", 7)
            assert not (root / "JSON_STORE/RANK/7.json").exists() and not (root / RANK_ROUTE / "7.json").exists()
            # Taken again (the service retries), it fails unread, with the reason.
            second = pipeline.process((c, "REALTIME") for c in scan(config.hot))
            assert (second.failed, second.pending) == (1, 0)
        finally:
            pipeline.close()
            pipeline.claims.tidy()
    (failed,) = failed_entries(root, "7.json")
    assert "unexpected error (TypeError: a case no one foresaw)" in read_reason(failed)["reason"]
    assert leftovers(root) == []


# A job file that kills the process whenever it is parsed (a stand-in for a crash in C code, or a
# hang the watchdog ends): the run is started through this wrapper.
KILLED_BY_MARKER = """
import os, signal, sys
from json_workflow import parse
from json_workflow.delivery import prepare
real = parse.parse_job
def parse_job(raw, *rest):
    if b"KILLS-THE-PROCESS" in raw:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(raw, *rest)
prepare.parse_job = parse_job
from json_workflow.cli import main
main(["run", "--once", "--config", sys.argv[1]])
"""


@pytest.mark.parametrize("processes", [1, 2])
def test_a_file_that_kills_every_run_is_set_aside_and_the_others_go_on(root, tmp_path, processes):
    # With two processes the backlog is shared, and the poison is in the worker process's share: it kills the
    # worker first, the run finishes the worker's files itself (the poison alone), and then it kills the run.
    marked = "020-poison.json" if processes == 1 else "020-poisoned.json"
    names = [f"{n:03d}.json" for n in range(40 if processes == 1 else SHARED_FROM + 40)]
    (root / "JSON/RANK").mkdir()
    for n, name in enumerate(names):
        (root / "JSON/RANK" / name).write_bytes(job("RANK", "X", n))
    poison = job("RANK", "KILLS-THE-PROCESS", 99)
    settings = tmp_path / "once.toml"
    settings.write_text(f'root = "{root}"\nprocesses = {processes}\n')
    (root / "JSON/RANK" / marked).write_bytes(poison)
    codes = []
    for _ in range(8):
        done = subprocess.run(
            [sys.executable, "-c", KILLED_BY_MARKER, str(settings)], capture_output=True, text=True, timeout=120
        )
        codes.append(done.returncode)
        if done.returncode == 0:
            break
    # The run killed once in its batch (unless its worker process was: the run goes on), three times alone
    in_batch = share(marked, processes) == 0
    assert codes[-1] == 0 and codes.count(-9) == 3 + in_batch, codes
    (failed,) = failed_entries(root, marked)
    assert failed.read_bytes() == poison
    reason = read_reason(failed)
    assert reason["stage"] == "recovery" and "stopped unexpectedly 3 times" in reason["reason"]
    assert sorted(os.listdir(root / "JSON_STORE/RANK")) == names
    assert sorted(os.listdir(root / RANK_ROUTE)) == names
    assert leftovers(root) == []
    assert not any((root / "JSON").rglob("*.json"))


def test_a_client_has_one_archive_folder_whatever_the_case_it_comes_in(root):
    # Top-level files carry only their ClientCode; its case must not make a second archive folder.
    (root / "JSON/a.json").write_bytes(job("rank", "X", 1))
    (root / "JSON/b.json").write_bytes(job("Rank", "X", 2))
    (root / "JSON/c.json").write_bytes(job("newclient", "X", 3))
    (root / "JSON/Loreal").mkdir()
    (root / "JSON/Loreal/d.json").write_bytes(job("LOREAL", "X", 4))
    (root / "JSON_STORE/LOREAL").mkdir(parents=True)  # the archive's spelling wins
    summary = run_once(build({}, "t", root=root))
    assert summary.archived == 4
    assert sorted(os.listdir(root / "JSON_STORE")) == ["LOREAL", "NEWCLIENT", "RANK"]
    assert sorted(os.listdir(root / "JSON_STORE/RANK")) == ["a.json", "b.json"]
    assert sorted(os.listdir(root / RANK_ROUTE)) == ["a.json", "b.json"]
    assert os.listdir(root / "JSON_STORE/LOREAL") == ["d.json"]
