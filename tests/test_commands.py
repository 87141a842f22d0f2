"""Every command at its edges: a missing root, a dead store, a taken port, a mistaken argument.

Each one exits non-zero with a message that names the problem, within seconds, never hanging and
never reporting success for nothing; nothing is touched before the problem is known.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from conftest import cli, drop, failed_entries, snapshot, wait_for
from json_workflow.samples import job

COMMANDS = [
    ["run", "--once"],
    ["status"],
    ["status", "--json"],
    ["history", "5903771"],
    ["stats"],
    ["report"],
    ["retry"],
    ["retry", "RANK"],
    ["replay", "--config", "/dev/null"],
    ["replay", "--config", "/dev/null", "--apply"],
    ["dashboard"],
    ["store", "migrate", "--to", "postgresql://jw@localhost/x"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_on_a_missing_root_exits_non_zero_naming_it(tmp_path, command):
    missing = tmp_path / "no-such-root"
    began = time.monotonic()
    r = cli(*command, "--root", str(missing), timeout=30)
    assert r.returncode != 0 and r.returncode != 3, (r.returncode, r.stdout, r.stderr)  # 3: "no service", not this
    assert str(missing) in r.stderr and "does not exist" in r.stderr, r.stderr
    assert time.monotonic() - began < 15
    assert not missing.exists()  # nothing was made in its place


@pytest.fixture
def silent_server():
    """A TCP port that takes connections and never answers: a store host that hangs."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield server.getsockname()[1]
    server.close()


def fleet_config(tmp_path: Path, root: Path, url: str, timeout: float = 3) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'root = "{root}"\ninstance = "press-1"\n[store]\nurl = "{url}"\nconnect_timeout = {timeout}\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
    )
    return path


@pytest.mark.parametrize("store", ["stopped", "silent", "unknown database", "wrong password"])
def test_run_once_with_a_store_it_cannot_use_exits_1_within_connect_timeout(
    tmp_path, root, pg_server, silent_server, store
):
    if store == "stopped":
        url = f"postgresql://jw@/postgres?host={tmp_path / 'no-server-here'}"
    elif store == "silent":
        url = f"postgresql://jw@127.0.0.1:{silent_server}/postgres"
    elif store == "unknown database":
        url = pg_server.url("no_such_database")
    else:
        url = locked_role(pg_server)
    drop(root, "RANK", "a.json", data := job("RANK", "PRODUCTION", 1))
    before = snapshot(root / "JSON")
    began = time.monotonic()
    r = cli(
        "run", "--once", "--config", str(fleet_config(tmp_path, root, url)), env={"JSON_WORKFLOW_DB_PASSWORD": "wrong"}
    )
    took = time.monotonic() - began
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "gave up on the store after store.connect_timeout (3s)" in r.stderr, r.stderr
    assert "wrong" not in r.stderr.replace("wrong password", "")  # the password is never shown
    assert took < 3 + 6, took  # the timeout, one attempt's own, and the interpreter's start
    assert snapshot(root / "JSON") == before and (root / "JSON/RANK/a.json").read_bytes() == data


def locked_role(pg_server) -> str:
    """A role that needs a password (scram), for a wrong-password test: its URL."""
    with pg_server.admin() as db:
        if not db.execute("SELECT 1 FROM pg_roles WHERE rolname = 'locked'").fetchone():
            db.execute("CREATE ROLE locked LOGIN PASSWORD 'right'")
    hba = pg_server.data / "pg_hba.conf"
    text = hba.read_text()
    if not text.startswith("local all locked"):
        staged = pg_server.top / "hba"
        staged.write_text("local all locked scram-sha-256\n" + text)
        subprocess.run([*pg_server.as_owner, "cp", str(staged), str(hba)], check=True)
        with pg_server.admin() as db:
            db.execute("SELECT pg_reload_conf()")
    return f"postgresql://locked@/postgres?host={pg_server.socket}"


STORE_COMMANDS = [
    ["status"],
    ["history", "5903771"],
    ["stats"],
    ["report"],
    ["retry", "RANK"],
    ["dashboard"],
]


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_every_command_with_its_store_down_exits_1_naming_it_and_touches_nothing(tmp_path, root, command):
    url = f"postgresql://jw@/postgres?host={tmp_path / 'no-server-here'}"
    drop(root, "RANK", "bad.json", b"{")
    assert cli("run", "--once", "--root", str(root)).returncode == 0  # a failed file to retry, on SQLite
    folders = ("JSON", "JSON_FAILED", "JSON_PARSER_STATE")  # the log may say what happened
    before = [snapshot(root / folder) for folder in folders]
    r = cli(*command, "--config", str(fleet_config(tmp_path, root, url)), timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "cannot connect to the store" in r.stderr and url in r.stderr, r.stderr
    assert [snapshot(root / folder) for folder in folders] == before  # retry moved nothing it could not record


def test_check_config_applies_what_run_and_dashboard_check(tmp_path, root):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'root = "{root}"\n[http]\nlisten = "0.0.0.0:8787"\n')
    r = cli("check-config", "--config", str(cfg))
    assert r.returncode == 2 and "http.listen: 0.0.0.0:8787 is not a loopback address" in r.stderr
    assert cli("check-config", "--config", str(cfg), env={"JSON_WORKFLOW_HTTP_TOKEN": "t"}).returncode == 0
    cfg.write_text(
        f'root = "{root}"\n[email]\nenabled = true\nsmtp_host = "h"\nsender = "a@b"\nrecipients = ["c@d"]\n'
        'username = "u"\n'
    )
    r = cli("check-config", "--config", str(cfg))
    assert r.returncode == 2 and "email.password_env: the environment variable" in r.stderr
    assert cli("run", "--config", str(cfg), timeout=20).returncode == 2  # what the service says too


def test_report_into_a_missing_folder_names_it_and_writes_nothing(tmp_path, root):
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    target = tmp_path / "nowhere" / "r.html"
    r = cli("report", "--root", str(root), "--output", str(target))
    assert r.returncode == 1
    assert (
        r.stderr == f"json-workflow: cannot write the report to {target}: the folder {target.parent} does not exist\n"
    )
    assert ".jwtmp" not in r.stderr and not target.parent.exists()


def test_retry_of_a_client_without_failed_files_exits_1_naming_it_and_moves_nothing(root):
    drop(root, "RANK", "bad.json", b"{")
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    r = cli("retry", "--root", str(root), "RANK", "NOSUCH")
    assert r.returncode == 1, r.stdout
    assert f"no failed files of NOSUCH in {root}/JSON_FAILED (clients with failed files: RANK)" in r.stderr
    assert failed_entries(root, "bad.json") and not (root / "JSON/RANK/bad.json").exists()  # nothing moved
    assert cli("retry", "--root", str(root), "rank").returncode == 0
    again = cli("retry", "--root", str(root), "RANK")
    assert again.returncode == 1 and "no failed files of RANK" in again.stderr and "(it holds none)" in again.stderr
    nothing = cli("retry", "--root", str(root))
    assert nothing.returncode == 0 and nothing.stdout == f"No failed files in {root}/JSON_FAILED: nothing to retry\n"


def test_replay_mistakes_are_usage_errors(tmp_path, root):
    (root / "JSON_STORE/RANK").mkdir(parents=True)
    (root / "JSON_STORE/RANK/1.json").write_bytes(job("RANK", "PRODUCTION", 1))
    backwards = cli(
        "replay", "--root", str(root), "--config", "/dev/null", "--since", "2026-12-07", "--until", "2026-12-01"
    )
    assert backwards.returncode == 2 and "--since 2026-12-07 is later than --until 2026-12-01" in backwards.stderr
    unknown = cli("replay", "--root", str(root), "--config", "/dev/null", "--client", "NOSUCH")
    assert unknown.returncode == 2 and f"no client folder NOSUCH in {root}/JSON_STORE" in unknown.stderr
    (root / "JSON_STORE/RANK/1.json").unlink()
    (root / "JSON_STORE/RANK").rmdir()
    (root / "JSON_STORE").rmdir()
    empty = cli("replay", "--root", str(root), "--config", "/dev/null")
    assert empty.returncode == 2 and f"the archive {root}/JSON_STORE does not exist" in empty.stderr


def test_the_dashboard_on_a_port_in_use_says_so_and_exits_1(tmp_path, root):
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'root = "{root}"\n[http]\nlisten = "127.0.0.1:{port}"\n')
    try:
        r = cli("dashboard", "--config", str(cfg), timeout=20)
    finally:
        taken.close()
    assert r.returncode == 1
    assert f"cannot serve the dashboard on 127.0.0.1:{port} (http.listen): Address already in use" in r.stderr


def test_run_once_whose_store_dies_mid_run_stops_with_exit_1_and_loses_nothing(tmp_path, root, pg_server):
    from json_workflow.samples import backlog

    url = pg_server.database()
    good = {}
    for client, name, data, _ in backlog(1500, seed=5, bad_every=0):
        drop(root, client, name, data)
        good[name] = (client, data)
    cfg = fleet_config(tmp_path, root, url, timeout=3)
    run = subprocess.Popen(
        [sys.executable, "-m", "json_workflow", "run", "--once", "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: archived(root) >= 300 or run.poll() is not None, timeout=60, what="300 files archived")
        pg_server.stop("immediate")
        try:
            out, err = run.communicate(timeout=60)  # it stops: it neither hangs nor goes through every file
        finally:
            pg_server.start()
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, (out, err)
    assert "the store failed, the files left wait in the hot folder" in err and out.startswith("Processed ")
    assert archived(root) < len(good)
    # Nothing lost: a second run (the store back) finishes every file, each archived once with its bytes.
    again = cli("run", "--once", "--config", str(cfg), timeout=120)
    assert again.returncode == 0, again.stderr
    for name, (client, data) in good.items():
        assert (root / "JSON_STORE" / client / name).read_bytes() == data
    assert archived(root) == len(good) and not [p for p in (root / "JSON").rglob("*") if p.is_file()]


def archived(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root / "JSON_STORE"))


@pytest.mark.parametrize("apply", [[], ["--apply"]], ids=["replay", "replay --apply"])
def test_replay_with_its_store_down_exits_2_naming_it_and_delivers_nothing(tmp_path, root, apply):
    (root / "JSON_STORE/BISSELL").mkdir(parents=True)
    (root / "JSON_STORE/BISSELL/1.json").write_bytes(job("BISSELL", "SOCIAL", 1))
    url = f"postgresql://jw@/postgres?host={tmp_path / 'no-server-here'}"
    cfg = fleet_config(tmp_path, root, url)
    cfg.write_text(
        cfg.read_text() + '[[routes]]\nname = "Stores"\ndestination = "CLIENT-STORES/{ClientCode}/IN"\n'
        'when = { ClientCode = "BISSELL" }\n'
    )
    r = cli("replay", "--config", str(cfg), *apply, timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "cannot use the store" in r.stderr and url in r.stderr
    assert not (root / "CLIENT-STORES").exists()


@pytest.mark.parametrize(
    "output, why",
    [
        ("JSON_PARSER_STATE/journal.sqlite3", "expected a file name ending .html"),
        ("JSON_PARSER_LOGS/json_workflow.log", "expected a file name ending .html"),
        ("JSON_PARSER_STATE/r.html", "is in the state folder"),
        ("json_store/RANK/r.html", "is in the archive folder"),
        ("JSON/.processing/r.html", "is in the hot folder"),
    ],
)
def test_report_output_never_overwrites_json_workflows_own_files(root, output, why):
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    before = snapshot(root / "JSON_PARSER_STATE")
    r = cli("report", "--root", str(root), "--output", str(root / output))
    assert r.returncode == 2 and why in r.stderr, r.stderr
    assert snapshot(root / "JSON_PARSER_STATE") == before
    assert cli("report", "--root", str(root), "--output", str(root / "JSON_PARSER_LOGS/r.html")).returncode == 0


@pytest.mark.parametrize("command", [["status"], ["stats"], ["history", "x"], ["report"]], ids=" ".join)
def test_a_store_that_answers_no_query_holds_no_command_past_connect_timeout(tmp_path, root, pg_server, command):
    url = pg_server.database()
    cfg = fleet_config(tmp_path, root, url, timeout=3)
    assert cli("run", "--once", "--config", str(cfg)).returncode == 0  # the schema, and a run to report on
    with psycopg.connect(url) as db:  # another session holds the statistics locked
        db.execute("LOCK TABLE files IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        r = cli(*command, "--config", str(cfg), timeout=60)
        took = time.monotonic() - began
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "statement timeout" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert took < 3 + 6, took


def test_run_once_tries_the_store_again_but_never_past_connect_timeout(tmp_path, root, silent_server):
    cfg = fleet_config(tmp_path, root, f"postgresql://jw@127.0.0.1:{silent_server}/postgres", timeout=8)
    began = time.monotonic()
    r = cli("run", "--once", "--config", str(cfg), timeout=60)
    took = time.monotonic() - began
    assert r.returncode == 1 and "gave up on the store after store.connect_timeout (8s)" in r.stderr
    assert 8 <= took + 0.5 and took < 8 + 2.5, took  # two tries (5 s, then the 2 s that fit), the pauses between


@pytest.mark.slow  # a PostgreSQL of its own, frozen mid-run
def test_run_once_whose_store_freezes_mid_run_ends_by_itself(tmp_path, root):
    from json_workflow.samples import backlog
    from pg_server import PgServer

    server = PgServer()
    try:
        for client, name, data, _ in backlog(1500, seed=5, bad_every=0):
            drop(root, client, name, data)
        cfg = fleet_config(tmp_path, root, server.database(), timeout=3)
        run = subprocess.Popen(
            [sys.executable, "-m", "json_workflow", "run", "--once", "--config", str(cfg)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: archived(root) >= 200 or run.poll() is not None, timeout=60, what="200 files archived")
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        frozen = [postmaster, *map(int, subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                                                        text=True).stdout.split())]  # fmt: skip
        for pid in frozen:  # the server stops answering, its host alive (a hung disk, a stopped VM)
            os.kill(pid, signal.SIGSTOP)
        began = time.monotonic()
        try:
            out, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert run.returncode == 1, (out, err)
        assert time.monotonic() - began < 3 + 5 + 6  # the statement timeout, the watch's grace, a margin
        again = cli("run", "--once", "--config", str(cfg), timeout=120)  # nothing lost
        assert again.returncode == 0, again.stderr
        assert archived(root) == 1500
    finally:
        server.close()


def test_a_journal_another_process_holds_locked_ends_run_once_within_connect_timeout_naming_it(tmp_path, root):
    import sqlite3

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'root = "{root}"\n[store]\nconnect_timeout = 2\n')
    assert cli("run", "--once", "--config", str(cfg)).returncode == 0  # the journal exists
    journal = root / "JSON_PARSER_STATE/journal.sqlite3"
    holder = sqlite3.connect(journal, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a sqlite3 shell, say, in the middle of a transaction
    try:
        began = time.monotonic()
        r = cli("run", "--once", "--config", str(cfg), timeout=60)
        took = time.monotonic() - began
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 1 and f"{journal}: database is locked by another process" in r.stderr, r.stderr
    assert "damaged" not in r.stderr and took < 2 + 3, took
