"""The json-workflow command in real subprocesses: run --once, explain, check-config, retry, demo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import CELTRA, cli, drop, failed_entries, files, snapshot
from json_workflow.samples import job

REPO = Path(__file__).resolve().parent.parent
LOG_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - (INFO|ERROR|WARNING) - \[[^\]]+\] "
SUMMARY = re.compile(
    r"Processed (\d+) files? in \d+\.\d\ds: (\d+) archived \((\d+) routed\), (\d+) failed, (\d+) pending"
)


def counts(stdout: str) -> tuple[int, ...]:
    m = SUMMARY.search(stdout)
    assert m, stdout
    return tuple(int(g) for g in m.groups())


def test_run_once_prints_summary_and_writes_seed_style_log(root):
    drop(root, "RANK", "x.json", job("RANK", "PRODUCTION", 5903771))
    drop(root, "OLIVER", "o.json", job("OLIVER", "CELTRA", 1))
    drop(root, "RANK", "bad.json", b"{")
    (root / "SYNC/MAKE").mkdir(parents=True)
    (root / "SYNC/MAKE/Monday RB").write_text("blocker")
    drop(root, "RECKITTBENCKISER", "rb.json", job("RECKITTBENCKISER", "X", 1))
    r = cli("run", "--once", "--root", str(root))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    assert counts(r.stdout) == (3, 2, 2, 1, 1)  # processed, archived, routed, failed, pending
    log = (root / "JSON_PARSER_LOGS/json_workflow.log").read_text()
    lines = log.splitlines()
    assert all(re.match(LOG_LINE, line) for line in lines), log
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - INFO - \[worker-\d+\] \[STARTUP\] Processing: RANK/x\.json$", log, re.M
    )
    assert re.search(r" - INFO - \[worker-\d+\] \[STARTUP\] Stored file: RANK/x\.json$", log, re.M)
    assert re.search(r" - INFO - \[worker-\d+\] \[STARTUP\] Routed to: Monday Rank$", log, re.M)
    assert re.search(r" - INFO - \[worker-\d+\] \[STARTUP\] Routed to: Celtra \(eligible client\)$", log, re.M)
    assert re.search(
        r" - INFO - \[worker-\d+\] \[STARTUP\] Successfully processed RANK/x\.json \(\d+\.\d\ds\)$", log, re.M
    )
    assert re.search(r" - ERROR - .*Failed RANK/bad\.json at parse: invalid JSON", log)
    assert len(re.findall(r" - ERROR - .*Destination unavailable.*Monday RB.*errno 20", log)) == 1
    assert "Processing: RANK/x.json" in r.stderr  # also on stderr


def test_run_once_environment_stands_in_for_flags(root, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[paths]\nhot = "INBOX"\n[permissions]\nfile_mode = 0o600\n')
    (root / "INBOX/RANK").mkdir(parents=True)
    (root / "INBOX/RANK/x.json").write_bytes(job("RANK", "X", 1))
    r = cli("run", "--once", env={"JSON_WORKFLOW_ROOT": str(root), "JSON_WORKFLOW_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert counts(r.stdout)[:2] == (1, 1)
    archived = root / "JSON_STORE/RANK/x.json"
    assert archived.exists() and (archived.stat().st_mode & 0o777) == 0o600


def test_run_once_missing_hot_folder_exits_1_with_clear_message(tmp_path):
    r = cli("run", "--once", "--root", str(tmp_path / "absent"))
    assert r.returncode == 1
    assert "hot folder" in r.stderr and str(tmp_path / "absent" / "JSON") in r.stderr
    assert "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "absent").exists()


def test_run_once_invalid_config_exits_2(tmp_path, root):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[paths]\nhott = 1\n")
    r = cli("run", "--once", "--root", str(root), "--config", str(cfg))
    assert r.returncode == 2
    assert str(cfg) in r.stderr and "paths.hott: unknown key" in r.stderr


def test_explain_prints_fields_and_destinations_and_changes_nothing(root):
    target = drop(root, "RANK", "x.json", job("RANK", "CELTRA", 5, title="Spring"))
    bad = drop(root, "RANK", "bad.json", b"{")
    before = snapshot(root)
    r = cli("explain", "--root", str(root), str(target), str(bad))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "ClientCode:  RANK" in out
    assert "JobCategory: CELTRA" in out
    assert "StudioCode:  RANK_STUDIO" in out
    assert "Title:       Spring" in out
    assert f"-> {root}/JSON_STORE/RANK/x.json  (archive)" in out
    assert f'-> {root}/SYNC/MAKE/Monday Rank/x.json  (rule "Monday Rank")' in out
    assert f'-> {root}/{CELTRA}/x.json  (rule "Celtra (eligible client)")' in out
    assert "    Monday Rank: matched\n" in out
    assert "    Monday RB: no, ClientCode = RECKITTBENCKISER failed: it is 'RANK'\n" in out
    assert "rejected at parse: invalid JSON" in out
    assert f"-> {root}/JSON_FAILED/RANK/" in out
    assert snapshot(root) == before
    assert not (root / "JSON_PARSER_LOGS").exists()


def test_explain_unroutable_client_is_archive_only(root, tmp_path):
    f = tmp_path / "loose.json"
    f.write_bytes(job("ACME", "CELTRA", 1))
    r = cli("explain", "--root", str(root), str(f))
    assert r.returncode == 0
    assert r.stdout.count("->") == 1
    assert f"-> {root}/JSON_STORE/ACME/loose.json  (archive)" in r.stdout


def test_explain_unreadable_file_exits_1(root, tmp_path):
    before = snapshot(root)
    r = cli("explain", "--root", str(root), str(tmp_path / "missing.json"))
    assert r.returncode == 1
    assert "cannot read" in r.stdout
    assert snapshot(root) == before


def test_check_config_valid_prints_routing_table(tmp_path):
    r = cli("check-config", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "(valid)" in out
    assert "routes (6)" in out
    for name, dest in [
        ("Monday Rank", "SYNC/MAKE/Monday Rank"),
        ("Monday RB", "SYNC/MAKE/Monday RB"),
        ("BISSELL-WRIKE/IN", "CLIENT-STORES/BISSELL-WRIKE/IN"),
        ("LOREAL/IN", "CLIENT-STORES/LOREAL/IN"),
        ("Celtra", CELTRA),
        ("Celtra (eligible client)", CELTRA),
    ]:
        assert f"  {name}: " in out
        assert f"-> {tmp_path}/{dest}" in out
    assert "ClientCode in CIBC, OLIVER, ADIDAS, PAYPAL, RECKITTBENCKISER, BAYER, 3M, RANK" in out
    assert "permissions: files 0664, folders 0775" in out
    assert "dashboard: http://127.0.0.1:8787/ (this host only; no token (JSON_WORKFLOW_HTTP_TOKEN not set))" in out


def test_check_config_twist_example_via_env():
    r = cli("check-config", env={"JSON_WORKFLOW_CONFIG": str(REPO / "examples/twist.toml")})
    assert r.returncode == 0, r.stderr
    assert "permissions: files 0777, folders 0777" in r.stdout
    assert "root:    /data/PRODUCTION" in r.stdout


def test_check_config_invalid_exits_2_with_file_and_key(tmp_path):
    text = (
        (REPO / "examples/twist.toml")
        .read_text()
        .replace('when = { ClientCode = "LOREAL" }', "when = { ClientCode = 1.5 }")
    )
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = cli("check-config", "--config", str(cfg))
    assert r.returncode == 2
    assert f"invalid configuration in {cfg}" in r.stderr
    assert "routes[3].when.ClientCode: expected a string, a list of strings, or a table of one operator" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("destination, why", [("../outside/IN", 'no ".."'), ("JSON/OUT", "inside the hot folder")])
@pytest.mark.parametrize("command", [["check-config"], ["run", "--once"]])
def test_a_destination_outside_root_or_inside_the_hot_folder_exits_2_and_creates_nothing(
    tmp_path, root, outside, command, destination, why
):
    drop(root, "RANK", "x.json", job("RANK", "X", 1))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[routes]]\nname = "r"\ndestination = "{destination}"\nwhen = {{ ClientCode = "RANK" }}\n')
    before = snapshot(tmp_path)
    r = cli(*command, "--root", str(root), "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    assert f"invalid configuration in {cfg}" in r.stderr
    assert "routes[0].destination: " in r.stderr and why in r.stderr
    assert r.stdout == ""
    assert snapshot(tmp_path) == before  # nothing created, inside the root or outside it


def test_check_config_missing_file_exits_2(tmp_path):
    r = cli("check-config", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert str(tmp_path / "nope.toml") in r.stderr and "file not found" in r.stderr


def test_retry_command_moves_files_back_and_respects_clients(root):
    drop(root, "RANK", "r.json", b"{rank")
    drop(root, "LOREAL", "l.json", b"{loreal")
    drop(root, None, "top.json", b"{top")
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    assert len(files(root / "JSON_FAILED")) == 6

    r = cli("retry", "--root", str(root), "RANK", "_unknown")
    assert r.returncode == 0, r.stderr
    assert "Retried 2 files" in r.stdout
    assert (root / "JSON/RANK/r.json").read_bytes() == b"{rank"
    assert (root / "JSON/top.json").read_bytes() == b"{top"
    assert not (root / "JSON/LOREAL/l.json").exists()
    assert sorted(Path(p).parent.name for p in files(root / "JSON_FAILED")) == ["LOREAL", "LOREAL"]

    drop(root, "LOREAL", "l.json", b"newer")
    r = cli("retry", "--root", str(root))
    assert r.returncode == 0
    assert "skipped" in r.stdout and "Retried 0 files, skipped 1" in r.stdout
    assert (root / "JSON/LOREAL/l.json").read_bytes() == b"newer"
    (kept,) = failed_entries(root, "l.json")
    assert kept.read_bytes() == b"{loreal"


def test_demo_leaves_every_sample_where_it_says(tmp_path):
    from json_workflow.demo import SAMPLES

    sandbox = tmp_path / "demo"
    r = cli("demo", str(sandbox))
    assert r.returncode == 0, r.stderr
    assert files(sandbox / "JSON") == {"RANK/notes.txt": b"not a job file"}
    for folder, name, _, what in SAMPLES:
        assert f"JSON/{folder + '/' if folder else ''}{name}   [{what}]" in r.stdout
    expected = {
        "5903771.json": {"JSON_STORE/RANK", "SYNC/MAKE/Monday Rank"},
        "rb_1001.json": {"JSON_STORE/RECKITTBENCKISER", "SYNC/MAKE/Monday RB"},
        "order_5555.json": {"JSON_STORE/BISSELL", "CLIENT-STORES/BISSELL-WRIKE/IN"},
        "campaign_001.json": {"JSON_STORE/LOREAL", "CLIENT-STORES/LOREAL/IN"},
        "celtra_77.json": {"JSON_STORE/CELTRA", CELTRA},
        "oliver_celtra.json": {"JSON_STORE/OLIVER", CELTRA},
        "rank_celtra.json": {"JSON_STORE/RANK", "SYNC/MAKE/Monday Rank", CELTRA},
        "adidas_print.json": {"JSON_STORE/ADIDAS"},
        "acme_1.json": {"JSON_STORE/ACME"},
        "dropped_at_top.json": {"JSON_STORE/LOREAL", "CLIENT-STORES/LOREAL/IN"},
    }
    all_files = files(sandbox)
    for name, places in expected.items():
        assert {str(Path(p).parent) for p in all_files if Path(p).name == name} == places, name
    for folder, name in [
        ("RANK", "broken.json"),
        ("BISSELL", "no_client.json"),
        ("LOREAL", "wrong_folder.json"),
        ("_unknown", "escape.json"),
    ]:
        (failed,) = failed_entries(sandbox, name)
        assert failed.parent == sandbox / "JSON_FAILED" / folder
        assert failed.with_name(failed.name + ".reason.txt").exists()
    assert "Processed 14 files" in r.stdout and "10 archived" in r.stdout and "4 failed" in r.stdout
    assert (sandbox / "JSON_PARSER_LOGS/json_workflow.log").exists()


def test_demo_writes_todays_report_of_the_sandbox(tmp_path):
    r = cli("demo", str(tmp_path / "sandbox"))
    assert r.returncode == 0
    (line,) = [line for line in r.stdout.splitlines() if line.startswith("Report: ")]
    report = Path(line.split()[1])
    assert report.parent == tmp_path / "sandbox/JSON_PARSER_LOGS/reports" and report.is_file()
    assert "Monday Rank" in report.read_text() and "broken.json" in report.with_suffix(".txt").read_text()


def test_service_with_a_missing_hot_folder_exits_1_at_once(tmp_path):
    r = cli("run", "--root", str(tmp_path / "nowhere"), timeout=20)
    assert r.returncode == 1
    assert "hot folder" in r.stderr


def test_demo_never_builds_its_sandbox_in_a_folder_that_holds_something(root):
    drop(root, "RANK", "real.json", job("RANK", "PRODUCTION", 1))
    before = snapshot(root)
    r = cli("demo", str(root))
    assert r.returncode == 1 and "is not empty: the demo builds its sandbox in a new or empty folder" in r.stderr
    assert snapshot(root) == before
