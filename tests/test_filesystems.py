"""Filesystems that refuse hard links, a service running as another user, hard-linked inputs, FIFOs.

Every file must end where the README says, with its exact bytes, whatever link(2) answers.
"""

from __future__ import annotations

import os
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import cli, drop, failed_entries, files, leftovers, mounted_tmpfs, read_reason
from json_workflow.run import run_once
from json_workflow.samples import job

NOBODY, TWIST = 65534, 12345  # the service's user, and the user that owns the job files


def run_once_cli(root: Path, config: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`json-workflow run --once` on `root` with the configuration `config`, in a subprocess that may hang."""
    path = root / "test.toml"
    path.write_text(config)
    return cli("run", "--once", "--root", str(root), "--config", str(path), timeout=timeout)


def claimed(root: Path) -> list[str]:
    """Files left in the claim area."""
    return sorted(files(root / "JSON/.processing")) if (root / "JSON/.processing").exists() else []


def a_crash_left(root: Path, client: str, name: str, data: bytes) -> Path:
    """A file in the claim area with no journal entry, as a crash right after its claim leaves it."""
    folder = root / "JSON/.processing" / client
    folder.mkdir(parents=True)
    path = folder / f"{1:020d}_{name}"
    path.write_bytes(data)
    return path


@pytest.fixture
def open_tmp():
    """A scratch folder (and a data root in it) that another user can reach: directly under the system's temp.

    Not under pytest's tmp_path: pytest makes its pytest-of-<user> folder 0700 again whenever a session
    starts, so another session running meanwhile would lock the other user out halfway through a test.
    """
    folder = Path(tempfile.mkdtemp(prefix="jw-other-user-"))
    os.chmod(folder, 0o755)
    (folder / "root/JSON").mkdir(parents=True)
    yield folder, folder / "root"
    shutil.rmtree(folder, ignore_errors=True)


# --- exFAT: no hard links, no RENAME_NOREPLACE, modes always 0777 ----------------------------------


def failed_entries_shortened(root: Path, name: str) -> list[Path]:
    """Failed copies of a name too long to keep whole (its reason file has it whole)."""
    return [
        p
        for p in (root / "JSON_FAILED/RANK").iterdir()
        if not p.name.endswith(".reason.txt") and read_reason(p)["name"] == name
    ]


@pytest.mark.root
@pytest.mark.parametrize("file_mode", ["0664", "0777"])  # the default, and the seed's production setup
def test_a_data_root_on_exfat_works_end_to_end(exfat, file_mode):
    root = exfat / "PRODUCTION"
    good = {"g1.json": job("RANK", "PRODUCTION", 1), "g2.json": job("RANK", "CELTRA", 2)}
    bad = {"bad.json": b"{bad", "a" * 245 + ".json": b"{long", "empty.json": b""}
    for name, data in {**good, **bad}.items():
        drop(root, "RANK", name, data)
    drop(root, None, "top.json", b"{top")
    (root / "CLIENT-STORES/LOREAL").mkdir(parents=True)
    (root / "CLIENT-STORES/LOREAL/IN").write_bytes(b"a file where the folder should be")
    waiting, old, new = job("LOREAL", "X", 1), job("LOREAL", "X", 2), job("LOREAL", "X", 3)
    drop(root, "LOREAL", "w.json", waiting)
    a_crash_left(root, "LOREAL", "v.json", old)  # it waits for LOREAL/IN, and a newer v.json is there
    drop(root, "LOREAL", "v.json", new)

    # FUSE: no lease sees every writer there, so an unparsable file must be stable_seconds old to fail.
    first = run_once_cli(root, f'stable_seconds = 0\n[permissions]\nfile_mode = "{file_mode}"\n', timeout=60)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr and "Flush failed" not in first.stderr, first.stderr
    for name, data in good.items():
        assert (root / "JSON_STORE/RANK" / name).read_bytes() == data
        assert (root / "SYNC/MAKE/Monday Rank" / name).read_bytes() == data
    assert (root / "SYNC/MAKE/Celtra - Create_Rename - Project_Design File/g2.json").read_bytes() == good["g2.json"]
    for name, data in {**bad, "top.json": b"{top"}.items():
        (failed,) = failed_entries(root, name) or failed_entries_shortened(root, name)
        assert failed.read_bytes() == data
        assert read_reason(failed)["stage"] == "parse"
    (aside,) = failed_entries(root, "v.json")
    assert aside.read_bytes() == old and "superseded" in read_reason(aside)["reason"]
    assert (root / "JSON/LOREAL/w.json").read_bytes() == waiting
    assert (root / "JSON/LOREAL/v.json").read_bytes() == new
    assert claimed(root) == []
    assert leftovers(root) == []

    again = cli("retry", "--root", str(root), "--config", str(root / "test.toml"))
    assert again.returncode == 0, again.stderr
    assert "Retried 4 files, skipped 1" in again.stdout, again.stdout
    for name, data in bad.items():
        assert (root / "JSON/RANK" / name).read_bytes() == data  # the long one under its whole name
    assert (root / "JSON/top.json").read_bytes() == b"{top"
    assert (root / "JSON/LOREAL/v.json").read_bytes() == new  # never replaced by the older one
    assert failed_entries(root, "v.json") == [aside] and aside.read_bytes() == old
    assert sorted(p.name for p in (root / "JSON_FAILED/RANK").iterdir()) == []
    assert leftovers(root) == []


# --- a service that is not root, on files that other users own ------------------------------------


def run_as(uid: int, root: Path, *args: str) -> subprocess.CompletedProcess:
    """`json-workflow ARGS` run by `uid`, without any privilege, on an interpreter that user may run."""
    user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    src = str(Path(__import__("json_workflow").__file__).parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSON_WORKFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([src, *site.getsitepackages()])
    # A pyenv interpreter under /root is closed to other users; the system's of the same version is not.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, shutil.which(version, path="/usr/local/bin:/usr/bin")):
        probe = subprocess.run(
            [*user, python, "-c", "import json_workflow.cli"], env=env, cwd=root, capture_output=True
        )
        if python and probe.returncode == 0:
            return subprocess.run(
                [*user, python, "-m", "json_workflow", *args],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
                timeout=60,
            )
    pytest.skip(f"no Python that uid {uid} may run with this one's packages")


def owned_by(uid: int, path: Path, mode: int) -> Path:
    """`path` owned by `uid` with `mode`, written a minute ago: without a read lease on another user's
    file, only an unchanged modification time tells that its writer is done."""
    os.chown(path, uid, uid, follow_symlinks=False)
    os.chmod(path, mode)
    os.utime(path, (time.time() - 60,) * 2)
    return path


@pytest.mark.root
def test_a_service_running_as_another_user_handles_files_it_may_not_link_nor_chmod(open_tmp):
    # The service's user owns the data root and the sticky, world-writable hot folders; TWIST's user owns
    # the job files. fs.protected_hardlinks (on by default) refuses the service a link to them.
    tmp_path, root = open_tmp
    for client in ("RANK", "LOREAL"):
        (root / "JSON" / client).mkdir()
    (root / "CLIENT-STORES/LOREAL").mkdir(parents=True)
    (root / "CLIENT-STORES/LOREAL/IN").write_bytes(b"a file where the folder should be")
    old = owned_by(TWIST, a_crash_left(root, "LOREAL", "v.json", job("LOREAL", "X", 2)), 0o664)
    for folder in [root, root / "JSON/.processing", root / "JSON/.processing/LOREAL"]:
        owned_by(NOBODY, folder, 0o775)
    for folder in [root / "JSON", root / "JSON/RANK", root / "JSON/LOREAL"]:
        owned_by(NOBODY, folder, 0o1777)
    data = {
        "mode-set.json": (job("RANK", "X", 1), 0o664),  # already the configured mode: archived as it is
        "mode-other.json": (job("RANK", "X", 2), 0o644),  # its mode cannot be set: archived as a copy
        "bad.json": (b"{bad", 0o664),
        "empty.json": (b"", 0o644),
    }
    inode = {}
    for name, (content, mode) in data.items():
        inode[name] = owned_by(TWIST, drop(root, "RANK", name, content), mode).stat().st_ino
    os.mkfifo(root / "JSON/RANK/fifo.json")
    owned_by(TWIST, root / "JSON/RANK/fifo.json", 0o644)
    waiting = owned_by(TWIST, drop(root, "LOREAL", "w.json", job("LOREAL", "X", 1)), 0o664)
    newer = owned_by(TWIST, drop(root, "LOREAL", "v.json", job("LOREAL", "X", 3)), 0o664)

    result = run_as(NOBODY, root, "run", "--once", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    troubles = [line for line in result.stderr.splitlines() if "Destination unavailable" in line]
    assert troubles and all("CLIENT-STORES/LOREAL/IN" in line for line in troubles), result.stderr
    for name in ("mode-set.json", "mode-other.json"):
        archived = root / "JSON_STORE/RANK" / name
        assert archived.read_bytes() == data[name][0]
        assert stat.S_IMODE(archived.stat().st_mode) == 0o664
        assert (root / "SYNC/MAKE/Monday Rank" / name).read_bytes() == data[name][0]
    assert (root / "JSON_STORE/RANK/mode-set.json").stat().st_ino == inode["mode-set.json"]  # moved
    copied = (root / "JSON_STORE/RANK/mode-other.json").stat()
    assert copied.st_ino != inode["mode-other.json"] and copied.st_uid == NOBODY
    for name in ("bad.json", "empty.json"):
        (failed,) = failed_entries(root, name)
        assert failed.read_bytes() == data[name][0]
        assert stat.S_IMODE(failed.stat().st_mode) == 0o664
        assert read_reason(failed)["stage"] == "parse"
    (fifo,) = failed_entries(root, "fifo.json")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and "not a regular file" in read_reason(fifo)["reason"]
    assert (root / "JSON/LOREAL/w.json").read_bytes() == job("LOREAL", "X", 1)
    assert (root / "JSON/LOREAL/w.json").stat().st_uid == TWIST  # the file itself, back where it was
    assert newer.read_bytes() == job("LOREAL", "X", 3)
    (aside,) = failed_entries(root, "v.json")
    assert aside.read_bytes() == job("LOREAL", "X", 2) and "superseded" in read_reason(aside)["reason"]
    assert not old.exists() and waiting.exists()
    assert claimed(root) == []
    assert leftovers(root) == []


@pytest.mark.root
def test_folders_the_user_may_not_use_are_a_clear_error(open_tmp):
    tmp_path, root = open_tmp
    os.chmod(root, 0o777)
    os.chmod(root / "JSON", 0o700)  # root's own: nobody may not list it
    for command in (["run", "--once"], ["run"]):
        result = run_as(NOBODY, tmp_path, *command, "--root", str(root))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"hot folder {root / 'JSON'} cannot be read: Permission denied" in result.stderr
    os.chmod(root / "JSON", 0o777)
    os.chmod(root, 0o755)  # nor may it make its state folder
    result = run_as(NOBODY, tmp_path, "run", "--once", "--root", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot use the state folder {root / 'JSON_PARSER_STATE'}: Permission denied" in result.stderr


# --- a job file hard-linked from outside the data root --------------------------------------------


def test_a_hard_linked_input_never_shares_its_mode_nor_its_inode_with_the_outside(config, root, outside):
    inputs = {  # name: (bytes, mode of the outside file)
        "good.json": (job("RANK", "X", 1), 0o664),  # the configured mode: the original itself would do
        "good-640.json": (job("RANK", "X", 2), 0o640),
        "bad.json": (b"{bad", 0o600),
        "bad-664.json": (b"{bad", 0o664),
    }
    before = {}
    for name, (data, mode) in inputs.items():
        (outside / name).write_bytes(data)
        os.chmod(outside / name, mode)
        (root / "JSON/RANK").mkdir(exist_ok=True)
        os.link(outside / name, root / "JSON/RANK" / name)
        before[name] = os.stat(outside / name)
    summary = run_once(config)
    assert (summary.archived, summary.failed, summary.pending) == (2, 2, 0)
    for name, (data, mode) in inputs.items():
        after = os.stat(outside / name)
        assert (outside / name).read_bytes() == data
        assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
            before[name].st_ino,
            mode | stat.S_IFREG,
            before[name].st_mtime_ns,
        )
        assert after.st_nlink == 1  # the hot folder's link is gone, and no other took its place
        if name.startswith("good"):
            kept = root / "JSON_STORE/RANK" / name
        else:
            (kept,) = failed_entries(root, name)
        assert kept.read_bytes() == data
        assert kept.stat().st_ino != after.st_ino
        assert stat.S_IMODE(kept.stat().st_mode) == 0o664


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
