"""run.py on real files: one `run_once` seen from the outside.

Components:
- check_hot_folder: a missing hot folder is a clear error, and is never created
- exclusive: the state folder's lock refuses a second run while one holds it
- Summary: an empty hot folder is a quiet run; the summary line's counts
- the log lines of each file, tagged with its source ([STARTUP])
"""

from __future__ import annotations

import fcntl
import logging
import re

import pytest

from conftest import FIXED_STAMP, drop, run
from json_workflow.config import build
from json_workflow.errors import WorkflowError
from json_workflow.run import run_once
from json_workflow.samples import job

# --- the hot folder and the lock ------------------------------------------------------------------


def test_missing_hot_folder_raises_a_clear_error(tmp_path):
    config = build({}, "t", root=tmp_path / "nothing")
    with pytest.raises(WorkflowError, match="hot folder .* does not exist"):
        run_once(config)
    assert not (tmp_path / "nothing").exists()


def test_a_second_run_while_one_holds_the_lock_is_refused(config, root):
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    run(config)  # creates the state folder
    drop(root, "RANK", "b.json", job("RANK", "X", 2))
    with open(root / "JSON_PARSER_STATE/run.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(WorkflowError, match="another json-workflow"):
            run(config)
    assert (root / "JSON/RANK/b.json").exists()
    assert run(config).archived == 1


# --- the summary and the log ----------------------------------------------------------------------


def test_empty_hot_folder_is_a_quiet_run(config, root):
    summary = run(config)
    assert (summary.processed, summary.pending, summary.routed) == (0, 0, 0)
    assert summary.line().startswith("Processed 0 files in ")


def test_summary_line_counts(config, root):
    drop(root, "RANK", "a.json", job("RANK", "X", 1))
    drop(root, "ACME", "b.json", job("ACME", "X", 1))
    drop(root, "RANK", "c.json", b"")
    summary = run(config)
    assert re.fullmatch(
        r"Processed 3 files in \d+\.\d\ds: 2 archived \(1 routed\), 1 failed, 0 pending", summary.line()
    )


def test_log_lines_for_each_file(config, root, caplog):
    caplog.set_level(logging.INFO, logger="json_workflow")
    drop(root, "RANK", "x.json", job("RANK", "CELTRA", 1))
    drop(root, "RANK", "bad.json", b"{")
    run(config)
    messages = [line for r in caplog.records for line in r.getMessage().splitlines()]
    assert "[STARTUP] Processing: RANK/x.json" in messages
    assert "[STARTUP] Stored file: RANK/x.json" in messages
    assert "[STARTUP] Routed to: Monday Rank, Celtra (eligible client)" in messages
    assert any(re.fullmatch(r"\[STARTUP\] Successfully processed RANK/x\.json \(\d+\.\d\ds\)", m) for m in messages)
    failed = [m for m in messages if m.startswith("[STARTUP] Failed RANK/bad.json at parse: invalid JSON")]
    assert len(failed) == 1 and failed[0].endswith(f"{FIXED_STAMP}_bad.json")
