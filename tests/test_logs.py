"""The log file: batched write-outs, reopened after logrotate moved it, never an encoding error."""

from __future__ import annotations

import grp
import gzip
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Service, drop_atomically, wait_for, write_config
from json_workflow import logs
from json_workflow.samples import job

LOGROTATE = Path(__file__).parent.parent / "deploy" / "json-workflow.logrotate"


@pytest.fixture
def console(tmp_path, monkeypatch):
    """sys.stderr as a real file, as in production (the handler writes to a copy of its descriptor)."""
    path = tmp_path / "stderr"
    with open(path, "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        yield path


@pytest.fixture
def log_file(tmp_path, console):
    """json_workflow logging to tmp_path/logs/json_workflow.log and the console; closed after the test."""
    (tmp_path / "logs").mkdir()
    logs.setup(tmp_path / "logs")
    yield tmp_path / "logs" / logs.LOG_FILE
    for handler in logs.log.handlers:
        handler.close()
    logs.log.handlers.clear()


def test_lines_wait_for_the_batch_flush_and_warnings_go_out_at_once(log_file):
    logs.log.info("first of the batch")
    logs.log.info("second of the batch")
    assert log_file.read_text() == ""
    logs.flush()
    assert re.findall(r"(first|second) of the batch$", log_file.read_text(), re.M) == ["first", "second"]
    logs.log.warning("at once")
    assert log_file.read_text().endswith("] at once\n")


def test_pending_lines_are_written_out_before_they_pass_64_kib(log_file):
    for n in range(1000):
        logs.log.info("line %d %s", n, "x" * 100)  # about 150 KB in all, no batch end
    written = log_file.stat().st_size
    logs.flush()
    assert 0 < written and log_file.stat().st_size - written <= logs.WRITE_OUT_CHARS


@pytest.mark.parametrize("rotation", ["renamed", "renamed twice", "deleted"])
def test_lines_after_logrotate_moved_the_file_go_to_a_new_file(log_file, rotation):
    rotated = log_file.with_name(log_file.name + ".1")
    logs.log.info("before the rotation")
    logs.flush()
    if rotation == "deleted":
        log_file.unlink()
    else:
        log_file.rename(rotated)
    if rotation == "renamed twice":
        logs.log.info("between the rotations")
        logs.flush()
        log_file.rename(log_file.with_name(log_file.name + ".0"))
    logs.log.info("after the rotation")
    logs.flush()
    assert log_file.read_text().endswith("] after the rotation\n")
    assert "before" not in log_file.read_text()
    if rotation != "deleted":
        assert rotated.read_text().endswith("] before the rotation\n")


def test_a_name_that_is_not_utf8_is_logged_escaped(log_file, console):
    logs.log.info("Processing: RANK/%s", "caf\udce9.json")  # os.fsdecode(b"caf\xe9.json")
    logs.flush()  # raises nothing
    assert log_file.read_text().endswith("] Processing: RANK/caf\\xe9.json\n")  # as names.shown writes it
    assert console.read_text().endswith("] Processing: RANK/caf\\xe9.json\n")


def test_a_log_folder_that_vanished_fails_no_flush_and_writing_resumes_when_it_is_back(log_file, console):
    logs.log.info("before")
    logs.flush()
    shutil.rmtree(log_file.parent)
    logs.log.info("while the folder is gone")
    logs.flush()  # raises nothing: the pipeline calls it after every batch
    assert f"cannot write {log_file}" in console.read_text()
    log_file.parent.mkdir()
    logs.log.info("back")
    logs.flush()
    assert log_file.read_text().endswith("] back\n")


def logrotate_rule() -> str:
    """The logrotate rule deploy/json-workflow.logrotate gives (the README shows the same), as operators install it."""
    (rule,) = re.findall(
        r"^(/data/PRODUCTION/JSON_PARSER_LOGS/json_workflow\.log \{\n.*?\n\})$", LOGROTATE.read_text(), re.S | re.M
    )
    return rule


def every_logged_line(folder: Path) -> str:
    """The current log, the rotated plain files and the compressed ones, as one text."""
    parts = []
    for path in sorted(folder.glob(logs.LOG_FILE + "*")):
        data = path.read_bytes()
        parts.append(gzip.decompress(data) if path.name.endswith(".gz") else data)
    return b"".join(parts).decode()


def test_logrotate_under_load_loses_no_line(root, tmp_path):
    logrotate = shutil.which("logrotate", path=f"{os.environ.get('PATH', '')}:/usr/sbin")  # sbin: not on users' PATH
    if logrotate is None:
        pytest.skip("logrotate is not installed")
    folder = root / "JSON_PARSER_LOGS"
    rule = logrotate_rule()
    assert "delaycompress" in rule and "copytruncate" not in rule
    # The rule rotates as the unit's user (su root root); a test that is not root rotates as itself.
    owner = f"su {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(
        rule.replace("/data/PRODUCTION/JSON_PARSER_LOGS", str(folder)).replace("su root root", owner) + "\n"
    )
    rotate = [logrotate, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)]
    service = Service(root, write_config(tmp_path / "config.toml", root)).start()
    try:
        names = [f"{n}.json" for n in range(300)]
        for n, name in enumerate(names):
            drop_atomically(root, "RANK", name, job("RANK", "X", n))
            if n % 40 == 20:
                subprocess.run(rotate, check=True, capture_output=True, timeout=10)
            time.sleep(0.01)  # spread the drops over a few seconds, so rotations fall between batches
        wanted = {f"Successfully processed RANK/{name} " for name in names}
        wait_for(
            lambda: all(line in every_logged_line(folder) for line in wanted),
            timeout=20,
            what="every file's line in the log, rotated or not",
        )
    finally:
        assert service.stop() == 0
    assert len(list(folder.glob("*.gz"))) >= 3  # rotations happened under load, and compressed
