"""The command line's manners: help and version, quiet and terminal output, plurals, names and rules as written."""

from __future__ import annotations

import datetime
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import cli, drop, failed_entries, wait_for, write_config
from json_workflow.samples import job
from smtp_server import free_port
from web_client import request

INFO_LINE = re.compile(r" - INFO - ")


def on_terminal(*args: str, timeout: float = 60, stop_when=None, stdout_too: bool = False) -> tuple[int, str, str]:
    """Run `json-workflow ARGS` with stderr on a pseudo-terminal: (exit code, stdout, what the terminal showed).

    `stop_when`: a service's condition to be sent SIGTERM at, polled while it runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSON_WORKFLOW_")}
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "json_workflow", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_too else subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop_when is not None and process.poll() is None and stop_when():
            process.send_signal(signal.SIGTERM)
            stop_when = None
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal's last descriptor
                break
            if not chunk:
                break
            shown += chunk
    else:
        process.kill()
        pytest.fail(f"json-workflow {' '.join(args)} did not finish in {timeout}s")
    os.close(master)
    stdout = process.stdout.read().decode() if process.stdout else ""
    return process.wait(timeout=10), stdout, shown.decode(errors="replace").replace("\r\n", "\n")


def test_help_and_version_have_their_short_forms():
    for flag in ("-h", "--help"):
        r = cli(flag)
        assert r.returncode == 0 and "Usage: " in r.stdout and "run" in r.stdout
    for flag in ("-V", "--version"):
        r = cli(flag)
        assert r.returncode == 0 and re.fullmatch(r"json-workflow, version \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout
    assert cli("run", "-h").stdout.count("--quiet") == 1


def test_quiet_shows_only_warnings_and_the_summary_while_the_log_keeps_every_line(root):
    drop(root, "RANK", "good.json", job("RANK", "PRODUCTION", 1))
    drop(root, "RANK", "bad.json", b"{")
    r = cli("run", "--once", "--quiet", "--root", str(root))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Processed 2 files in ")
    assert not INFO_LINE.search(r.stderr) and " - ERROR - " in r.stderr and "Failed RANK/bad.json" in r.stderr
    log = (root / "JSON_PARSER_LOGS/json_workflow.log").read_text()
    assert "Successfully processed RANK/good.json" in log and "Failed RANK/bad.json" in log


def test_log_level_sets_the_console_and_cannot_be_given_with_quiet(root):
    drop(root, "RANK", "good.json", job("RANK", "PRODUCTION", 1))
    r = cli("run", "--once", "--log-level", "WARNING", "--root", str(root))
    assert r.returncode == 0 and r.stderr == "" and r.stdout.startswith("Processed 1 file in ")
    assert "Successfully processed RANK/good.json" in (root / "JSON_PARSER_LOGS/json_workflow.log").read_text()
    both = cli("run", "--once", "--quiet", "--log-level", "info", "--root", str(root))
    assert both.returncode == 2 and "--quiet and --log-level cannot be used together" in both.stderr
    wrong = cli("run", "--once", "--log-level", "loud", "--root", str(root))
    assert wrong.returncode == 2 and "'loud' is not one of" in wrong.stderr


def test_a_terminal_sees_a_batch_cut_short_unless_a_log_level_is_asked_for(root):
    for n in range(40):
        drop(root, "RANK", f"j{n:02}.json", job("RANK", "PRODUCTION", n))
    code, stdout, shown = on_terminal("run", "--once", "--root", str(root))
    assert code == 0 and stdout.startswith("Processed 40 files in "), shown
    log = root / "JSON_PARSER_LOGS/json_workflow.log"
    logged = log.read_text()
    assert logged.count("Successfully processed RANK/") == 40  # the file keeps every line
    assert re.search(rf"\.\.\. \d+ more lines in {re.escape(str(log))}", shown), shown
    assert shown.count("Successfully processed") < 40

    for n in range(40):
        drop(root, "RANK", f"k{n:02}.json", job("RANK", "PRODUCTION", 100 + n))
    code, _, shown = on_terminal("run", "--once", "--log-level", "info", "--root", str(root))
    assert code == 0 and shown.count("Successfully processed RANK/k") == 40 and "more lines" not in shown


def test_a_service_working_through_a_backlog_on_a_terminal_shows_a_few_lines_a_second(root, tmp_path):
    for n in range(400):
        drop(root, "RANK", f"j{n:03}.json", job("RANK", "PRODUCTION", n))
    drop(root, "RANK", "bad.json", b"{")
    config = write_config(tmp_path / "c.toml", root)
    log = root / "JSON_PARSER_LOGS/json_workflow.log"

    def done() -> bool:
        return log.exists() and log.read_text().count("Successfully processed RANK/") == 400

    code, _, shown = on_terminal("run", "--config", str(config), stop_when=done)
    assert code == 0 and done()
    lines = shown.splitlines()
    assert len(lines) < log.read_text().count("\n") / 3, len(lines)  # 1,600 lines of files in the file
    assert re.search(rf"\.\.\. \d+ more lines in {re.escape(str(log))}", shown)
    assert "Failed RANK/bad.json at parse" in shown  # a problem is always shown
    assert "json-workflow starting" in lines[0] and "json-workflow stopped" in shown


def test_on_a_terminal_the_summary_stays_the_last_line(root):
    for n in range(60):
        drop(root, "RANK", f"j{n:02}.json", job("RANK", "PRODUCTION", n))
    code, _, shown = on_terminal("run", "--once", "--root", str(root), stdout_too=True)
    lines = shown.splitlines()
    assert code == 0 and lines[-1].startswith("Processed 60 files in "), lines[-3:]
    assert re.fullmatch(r"    \.\.\. \d+ more lines in \S+json_workflow\.log", lines[-2]), lines[-3:]


def test_counts_read_as_english(root):
    drop(root, "RANK", "bad.json", b"{")
    assert cli("run", "--once", "--root", str(root)).stdout.startswith("Processed 1 file in ")
    stats = cli("stats", "--root", str(root)).stdout
    assert re.search(r"\b1 error\b", stats) and not re.search(r"\b1 errors\b", stats), stats
    r = cli("retry", "--root", str(root))
    assert r.returncode == 0 and r.stdout.endswith("/RANK/bad.json\nRetried 1 file\n"), r.stdout


def test_a_regex_is_shown_as_written_in_check_config_and_explain(root, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        f'root = "{root}"\n[[routes]]\nname = "Sales"\ndestination = "OUT/SALES"\n'
        "when = { Title = { regex = 'Sale \\d{4}' } }\n"
    )
    r = cli("check-config", "--config", str(config))
    assert r.returncode == 0 and "Title matches regex 'Sale \\d{4}'" in r.stdout, r.stdout
    drop(root, "ACME", "a.json", job("ACME", "X", 1, title="Winter"))
    r = cli("explain", "--config", str(config), str(root / "JSON/ACME/a.json"))
    assert "Sales: no, Title matches regex 'Sale \\d{4}' failed: it is 'Winter'" in r.stdout, r.stdout


def test_explain_reads_a_failed_file_as_its_client_folders_and_shows_its_rules(root):
    drop(root, "RANK", "other.json", job("LOREAL", "CELTRA", 1))  # set aside: the client folder disagrees
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    (failed,) = failed_entries(root, "other.json")
    r = cli("explain", "--root", str(root), str(failed))
    assert r.returncode == 0, r.stderr
    assert "rejected at validate: ClientCode 'LOREAL' does not match its client folder 'RANK'" in r.stdout
    assert f"-> {root}/JSON_FAILED/RANK/" in r.stdout  # RANK, the folder it came from, not _unknown
    assert "    LOREAL/IN: matched" in r.stdout and "    Monday Rank: no, ClientCode = RANK failed" in r.stdout


def test_stats_of_another_day_shows_no_uptime(root):
    drop(root, "RANK", "good.json", job("RANK", "PRODUCTION", 1))
    assert cli("run", "--once", "--root", str(root)).returncode == 0
    today = cli("stats", "--root", str(root)).stdout
    assert "Uptime: service not running" in today
    yesterday = (datetime.date.today() - datetime.timedelta(days=2)).isoformat()
    other = cli("stats", "--date", yesterday, "--root", str(root))
    assert other.returncode == 0 and yesterday in other.stdout and "Uptime" not in other.stdout


def test_the_highlighted_column_appears_only_when_a_rule_of_that_name_exists(root, tmp_path):
    drop(root, "ACME", "a.json", job("ACME", "X", 1))
    config = tmp_path / "c.toml"
    config.write_text(
        f'root = "{root}"\n[[routes]]\nname = "Wrike"\ndestination = "OUT"\nwhen = {{ ClientCode = "ACME" }}\n'
    )
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    without = cli("stats", "--config", str(config)).stdout
    assert "ACME" in without and "Celtra" not in without, without
    assert "0 Celtra" in cli("stats", "--root", str(root)).stdout  # the built-in rules have Celtra rules


def test_a_name_that_is_not_utf8_is_logged_with_hex_escapes(root):
    hot = root / "JSON"
    folder = os.fsencode(hot) + b"/CL\xe9"
    os.makedirs(folder)
    with open(folder + b"/x\xe9.json", "wb") as f:
        f.write(job("RANK", "PRODUCTION", 1))
    r = cli("run", "--once", "--root", str(root))
    assert r.returncode == 0
    log = (root / "JSON_PARSER_LOGS/json_workflow.log").read_text()
    assert "Failed CL\\xe9/x\\xe9.json at validate" in log and "client folder 'CL\\xe9'" in log
    assert f"-> {root}/JSON_FAILED/CL\\xe9/" in log and "\\udc" not in log, log


def test_on_missing_skip_leaves_out_only_that_rules_copy(root, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        f'root = "{root}"\n'
        '[[routes]]\nname = "By studio"\ndestination = "OUT/{StudioCode}"\nwhen = { ClientCode = "ACME" }\n'
        'on_missing = "skip"\n'
        '[[routes]]\nname = "All"\ndestination = "OUT/ALL"\nwhen = { ClientCode = "ACME" }\n'
        '[[routes]]\nname = "Strict"\ndestination = "STRICT/{StudioCode}"\nwhen = { ClientCode = "STRICT" }\n'
    )
    lacking = b'{"JobSpecification": {"JobDetails": {"ClientCode": "ACME", "JobCategory": "X"}}}'
    drop(root, "ACME", "lacking.json", lacking)
    drop(root, "ACME", "full.json", job("ACME", "X", 1))
    drop(root, "STRICT", "strict.json", lacking.replace(b"ACME", b"STRICT"))
    explained = cli("explain", "--config", str(config), str(root / "JSON/ACME/lacking.json")).stdout
    assert 'no copy: rule "By studio" skipped: {StudioCode} is missing (on_missing = "skip")' in explained
    assert "(a missing field: no copy)" in cli("check-config", "--config", str(config)).stdout
    r = cli("run", "--once", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert (root / "OUT/ALL/lacking.json").read_bytes() == lacking
    assert (root / "JSON_STORE/ACME/lacking.json").read_bytes() == lacking
    assert sorted(p.name for p in (root / "OUT").iterdir()) == ["ACME_STUDIO", "ALL"]
    assert (root / "OUT/ACME_STUDIO/full.json").exists()
    log = (root / "JSON_PARSER_LOGS/json_workflow.log").read_text()
    assert 'rule "By studio" skipped: {StudioCode} is missing' in log
    (strict,) = failed_entries(root, "strict.json")  # the default stays "fail"
    assert not (root / "STRICT").exists() and strict.read_bytes() == lacking.replace(b"ACME", b"STRICT")


def test_dashboard_listens_where_listen_says(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    bad = cli("dashboard", "--listen", "nowhere", "--config", str(config))
    assert bad.returncode == 2 and "--listen" in bad.stderr and "expected" in bad.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "json_workflow", "dashboard", "--listen", f"127.0.0.1:{port}", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        reply = wait_for(lambda: _get(f"http://127.0.0.1:{port}/readyz"), what="the dashboard on --listen")
        assert reply.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def _get(url: str):
    try:
        return request(url)
    except OSError:
        return None


def test_listen_elsewhere_than_loopback_still_needs_the_token(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    r = cli("dashboard", "--listen", f"0.0.0.0:{free_port()}", "--config", str(config), timeout=20)
    assert r.returncode == 2 and "JSON_WORKFLOW_HTTP_TOKEN" in r.stderr and "0.0.0.0" in r.stderr


def test_debug_says_why_a_file_in_the_hot_folder_is_left_alone(root):
    drop(root, "RANK", "notes.txt", b"not a job")
    drop(root, "RANK", "job.JSON.part", b"{")
    r = cli("run", "--once", "--log-level", "debug", "--root", str(root))
    assert r.returncode == 0 and " - DEBUG - " in r.stderr
    assert "Ignored RANK/notes.txt: not a job file" in r.stderr and "Ignored RANK/job.JSON.part" in r.stderr
    assert "Ignored" not in cli("run", "--once", "--root", str(root)).stderr  # info, the default, is silent on it


def test_the_quiet_service_shows_its_start_stop_and_problems_only(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    console = tmp_path / "console.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "json_workflow", "run", "--quiet", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(console, "wb"),
    )
    log = root / "JSON_PARSER_LOGS/json_workflow.log"
    try:
        wait_for(lambda: log.exists() and "Watching" in log.read_text(), what="the service to start")
        drop(root, "RANK", "good.json", job("RANK", "PRODUCTION", 1))
        drop(root, "RANK", "bad.json", b"{")
        wait_for(lambda: "Successfully processed RANK/good.json" in log.read_text(), what="good.json")
        wait_for(lambda: "Failed RANK/bad.json" in console.read_text(), what="the failure on the console")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    shown = console.read_text()
    assert "json-workflow starting as instance" in shown and "json-workflow stopped" in shown
    assert "Processing:" not in shown and "Watching" not in shown, shown


def test_on_missing_is_checked_where_it_is_written(root, tmp_path):
    config = tmp_path / "c.toml"
    rule = '[[routes]]\nname = "R"\ndestination = "OUT"\nwhen = { ClientCode = "ACME" }\n'
    for value, expected in [('"ignore"', "routes[0].on_missing"), ('"skip"', "has none, so no field can be missing")]:
        config.write_text(f'root = "{root}"\n{rule}on_missing = {value}\n')
        r = cli("check-config", "--config", str(config))
        assert r.returncode == 2 and expected in r.stderr and str(config) in r.stderr, r.stderr


def test_a_day_out_of_range_is_a_usage_error_not_a_traceback(root):
    for args in (
        ["stats", "--date", "9999-12-31"],
        ["report", "--date", "0001-01-01"],
        ["replay", "--until", "9999-12-31", "--config", "x.toml"],
    ):
        r = cli(*args, "--root", str(root))
        assert r.returncode == 2 and "expected a day from 1970-01-02 to 9999-12-30" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_explain_never_sends_a_fields_control_characters_to_the_terminal(root):
    drop(root, "ACME", "esc.json", job("ACME", "x\x1b[31mRED", 1, title="\x1b[2Jcleared\u202e"))
    r = cli("explain", "--root", str(root), str(root / "JSON/ACME/esc.json"))
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\u202e" not in r.stdout
    assert "JobCategory: x\\x1b[31mRED" in r.stdout and "Title:       \\x1b[2Jcleared\\u202e" in r.stdout


def test_a_regex_with_both_quotes_and_an_invalid_one_are_shown_as_written(root, tmp_path):
    config = tmp_path / "c.toml"
    rule = '[[routes]]\nname = "R"\ndestination = "OUT"\n'
    both = "'''it's \"quoted\"'''"  # TOML's multi-line literal string: the pattern as it is
    config.write_text(f'root = "{root}"\n{rule}when = {{ Title = {{ regex = {both} }} }}\n')
    r = cli("check-config", "--config", str(config))
    assert r.returncode == 0 and "Title matches regex '''it's \"quoted\"'''" in r.stdout, r.stdout
    config.write_text(f"root = \"{root}\"\n{rule}when = {{ Title = {{ regex = 'Sale \\d{{4}}(' }} }}\n")
    r = cli("check-config", "--config", str(config))
    assert r.returncode == 2 and "invalid regex 'Sale \\d{4}('" in r.stderr, r.stderr


def test_listen_names_itself_and_a_blank_token_counts_as_none(root, tmp_path):
    config = write_config(tmp_path / "c.toml", root)
    for env in ({}, {"JSON_WORKFLOW_HTTP_TOKEN": "  "}):
        r = cli("dashboard", "--listen", f"0.0.0.0:{free_port()}", "--config", str(config), env=env, timeout=20)
        assert r.returncode == 2 and r.stderr.startswith("json-workflow: --listen: 0.0.0.0:"), r.stderr
        assert "invalid configuration" not in r.stderr


def test_a_blank_highlight_adds_no_column(root, tmp_path):
    drop(root, "RANK", "a.json", job("RANK", "CELTRA", 1))
    config = tmp_path / "c.toml"
    config.write_text(f'root = "{root}"\n[report]\nhighlight = " "\n')
    assert cli("run", "--once", "--config", str(config)).returncode == 0
    line = next(x for x in cli("stats", "--config", str(config)).stdout.splitlines() if x.startswith("RANK"))
    assert re.fullmatch(r"RANK: 1 processed, 1 routed, 0 errors", line.strip()), line


def test_a_large_backlog_on_a_terminal_gets_a_bar_and_a_problem_clears_its_line_first(root):
    for n in range(500):
        drop(root, "RANK", f"j{n:03}.json", job("RANK", "PRODUCTION", n))
    drop(root, "RANK", "bad.json", b"{")
    code, stdout, shown = on_terminal("run", "--once", "--root", str(root))
    assert code == 0 and stdout.startswith("Processed 501 files in "), shown
    assert "Processing  [" in shown and "Successfully processed" not in shown
    assert re.search(r"\r\x1b\[K\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - ERROR - .*Failed RANK/bad\.json at parse", shown), (
        shown
    )


def test_text_from_the_configuration_reaches_no_terminal_as_a_control(root, tmp_path):
    config = tmp_path / "c.toml"
    rule = '[[routes]]\nname = "R"\ndestination = "OUT/{StudioCode}"\non_missing = "skip"\n'
    config.write_text(
        f'root = "{root}"\n{rule}when = {{ Title = ["a\\u001bb", "c"], "JobSpecification.X\\u001bY" = "v" }}\n'
    )
    r = cli("check-config", "--config", str(config))
    assert r.returncode == 0 and "\x1b" not in r.stdout and "Title in a\\x1bb, c" in r.stdout, r.stdout
    drop(root, "ACME", "a.json", job("ACME", "X", 1, title="c"))
    r = cli("explain", "--config", str(config), str(root / "JSON/ACME/a.json"))
    assert r.returncode == 0 and "\x1b" not in r.stdout and "JobSpecification.X\\x1bY = v failed" in r.stdout
    for bad in ('name = "Evil\\u202ename"', 'name = "a\\nb"'):
        config.write_text(f'root = "{root}"\n[[routes]]\n{bad}\ndestination = "OUT"\nwhen = {{ ClientCode = "A" }}\n')
        r = cli("check-config", "--config", str(config))
        assert r.returncode == 2 and "routes[0].name" in r.stderr and "expected printable text" in r.stderr


def test_history_limit_is_a_range_and_dates_are_written_in_full(root):
    for limit in ("0", "-1", "99999999999999999999"):
        r = cli("history", "x", "--limit", limit, "--root", str(root))
        assert r.returncode == 2 and "--limit" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("stats", "--date", "20261207", "--root", str(root))
    assert r.returncode == 2 and "expected a date as YYYY-MM-DD" in r.stderr
