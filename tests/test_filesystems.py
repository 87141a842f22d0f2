"""Filesystems that refuse hard links, a service running as another user, hard-linked inputs, FIFOs.

Every file must end where the README says, with its exact bytes, whatever link(2) answers.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import cli, drop, failed_entries, leftovers, mounted_tmpfs, read_reason
from json_workflow.samples import job


def run_once_cli(root: Path, config: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`json-workflow run --once` on `root` with the configuration `config`, in a subprocess that may hang."""
    path = root / "test.toml"
    path.write_text(config)
    return cli("run", "--once", "--root", str(root), "--config", str(path), timeout=timeout)


# --- special files --------------------------------------------------------------------------------

def test_a_fifo_named_like_a_job_is_set_aside_without_waiting_for_a_writer(root):
    # With flush = "file" every new file is fsynced, and opening a FIFO to do so waited for a writer forever.
    (root / "JSON/RANK").mkdir()
    os.mkfifo(root / "JSON/RANK/fifo.json")
    drop(root, "RANK", "good.json", job("RANK", "X", 1))
    result = run_once_cli(root, 'flush = "file"\n')
    assert result.returncode == 0, result.stderr
    assert "1 archived (1 routed), 1 failed, 0 pending" in result.stdout, result.stderr
    (fifo,) = failed_entries(root, "fifo.json")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and "not a regular file" in read_reason(fifo)["reason"]
    assert leftovers(root) == []


@pytest.fixture
def failed_disk(tmp_path):
    """A filesystem of its own for the failed folder: no hard link reaches it."""
    yield from mounted_tmpfs(tmp_path / "failed", "1m")


@pytest.mark.root
def test_a_fifo_set_aside_on_another_filesystem_is_made_there_without_waiting_for_a_writer(root, failed_disk):
    # Copying it, where it cannot be linked, opened it to read its bytes: that waited for a writer forever.
    (failed_disk / "RANK").mkdir()
    (root / "JSON/RANK").mkdir()
    os.mkfifo(root / "JSON/RANK/fifo.json")
    result = run_once_cli(root, f'[paths]\nfailed = "{failed_disk}"\n')
    assert result.returncode == 0, result.stderr
    assert "1 failed, 0 pending" in result.stdout, result.stderr
    (fifo,) = [p for p in (failed_disk / "RANK").iterdir() if not p.name.endswith(".reason.txt")]
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and "not a regular file" in read_reason(fifo)["reason"]
    assert not os.path.lexists(root / "JSON/RANK/fifo.json")
    assert leftovers(root) == [] and leftovers(failed_disk) == []
