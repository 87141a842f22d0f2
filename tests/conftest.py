"""Shared fixtures and helpers: a sandbox data root with a JSON/ hot folder, configurations, file helpers,
run_once at a fixed clock, the service as a subprocess, a downstream consumer, and the report's sample figures."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from json_workflow.config import build
from json_workflow.reporting.figures import ClientFigures, DayFigures, Problem
from json_workflow.reporting.sample import sample_figures
from json_workflow.run import run_once
from pg_server import PgServer

CELTRA = "SYNC/MAKE/Celtra - Create_Rename - Project_Design File"
RANK_ROUTE = "SYNC/MAKE/Monday Rank"
CELTRA_ELIGIBLE = {"CIBC", "OLIVER", "ADIDAS", "PAYPAL", "RECKITTBENCKISER", "BAYER", "3M", "RANK"}
# The routing matrix of the issue, written out independently of json_workflow.config.
CLIENT_ROUTES = {
    "RANK": "SYNC/MAKE/Monday Rank",
    "RECKITTBENCKISER": "SYNC/MAKE/Monday RB",
    "BISSELL": "CLIENT-STORES/BISSELL-WRIKE/IN",
    "LOREAL": "CLIENT-STORES/LOREAL/IN",
    "CELTRA": CELTRA,
}
FAILED_NAME = re.compile(r"^(\d{8}_\d{6})(?:-(\d+))?_(.+)$")
# A fixed clock for runs whose failed names must be predictable: 2024-03-05 06:07:08 local time.
FIXED_NOW = time.mktime((2024, 3, 5, 6, 7, 8, 0, 0, -1))
FIXED_STAMP = "20240305_060708"


def expected_places(client: str, category: str) -> set[str]:
    """Folders (relative to root) a good job must reach under the built-in configuration."""
    places = {f"JSON_STORE/{client}"}
    if client.upper() in CLIENT_ROUTES:
        places.add(CLIENT_ROUTES[client.upper()])
    if category.upper() == "CELTRA" and client.upper() in CELTRA_ELIGIBLE:
        places.add(CELTRA)
    return places


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data root (a subfolder of tmp_path, so siblings can prove nothing escapes) with JSON/."""
    r = tmp_path / "root"
    (r / "JSON").mkdir(parents=True)
    return r


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A sibling of root that must stay as the test left it."""
    o = tmp_path / "outside"
    o.mkdir()
    return o


# --- the store: SQLite by default; PostgreSQL for the tests that take the `backend` fixture ------------

# The store URL the tests' configurations name: "" (SQLite) unless the running test is on PostgreSQL.
STORE = {"url": ""}


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL cluster for the session (never skipped: CI installs Debian's postgresql)."""
    server = PgServer()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    """Runs the test once on SQLite and once on a new PostgreSQL database."""
    if request.param == "postgresql":
        STORE["url"] = request.getfixturevalue("pg_server").database()
    yield request.param
    STORE["url"] = ""


def with_store(data: dict) -> dict:
    """`data` with the running test's store, unless it names one."""
    return {"store": {"url": STORE["url"]}, **data} if STORE["url"] else data


def query(config, sql: str, *args) -> list[tuple]:
    """Rows of `sql` (with ? marks) from the configuration's store, read directly."""
    if config.fleet:
        with psycopg.connect(config.store.url) as db:
            return db.execute(sql.replace("?", "%s"), args).fetchall()
    with contextlib.closing(sqlite3.connect(config.state / "journal.sqlite3")) as db:
        return db.execute(sql, args).fetchall()


def kept(config, path) -> str:
    """A path as the configuration's store keeps it: relative to root in PostgreSQL (hosts mount it anywhere)."""
    return os.path.relpath(path, config.root) if config.fleet else str(path)


@pytest.fixture
def config(root: Path):
    """The built-in configuration (the seed's matrix) on the sandbox root."""
    return build(with_store({}), "test", root=root)


def make_config(root: Path, **data):
    return build(with_store(data), "test", root=root)


def drop(root: Path, folder: str | None, name: str, data: bytes) -> Path:
    """Put a job file into JSON/{folder}/ (or the top of JSON/ when folder is None)."""
    target = root / "JSON" / folder if folder else root / "JSON"
    target.mkdir(parents=True, exist_ok=True)
    path = target / name
    path.write_bytes(data)
    return path


def files(top: Path) -> dict[str, bytes]:
    """Every regular file under `top` (symlinks not followed), relative path -> bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, top)
            out[rel] = b"<symlink>" if os.path.islink(p) else Path(p).read_bytes()
    return out


def json_count(top: Path) -> int:
    """JSON files under `top` now; folders removed meanwhile (a claim area tidied) are skipped, not an error."""
    return sum(n.endswith(".json") for _, _, names in os.walk(top) for n in names)


def find(top: Path, name: str) -> list[str]:
    """Relative paths under `top` of files called `name` (symlinks included)."""
    return sorted(rel for rel in files(top) if os.path.basename(rel) == name)


def failed_entries(root: Path, name: str) -> list[Path]:
    """Failed copies of `name` (not reason files) anywhere under JSON_FAILED."""
    out = []
    failed = root / "JSON_FAILED"
    if not failed.exists():
        return out
    for p in failed.rglob("*"):
        m = FAILED_NAME.match(p.name)
        if m and m.group(3) == name:
            out.append(p)
    return sorted(out)


def snapshot(top: Path) -> dict[str, tuple]:
    """Everything under `top` (itself included): type, size, mode and mtime, never following links."""
    out = {".": _stat(top)}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, top)] = _stat(p)
    return out


def _stat(p) -> tuple:
    st = os.lstat(p)
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)


def leftovers(top: Path, allowed: set[str] = frozenset()) -> list[str]:
    """Names under `top` that are temporaries (.jwtmp) or hidden, except those in `allowed`."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            if n in allowed:
                continue
            if n.endswith(".jwtmp") or n.startswith("."):
                bad.append(os.path.relpath(os.path.join(dirpath, n), top))
    return bad


def read_reason(failed_file: Path) -> dict[str, str]:
    text = Path(str(failed_file) + ".reason.txt").read_text()
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


def cli(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run `python -m json_workflow ARGS` in a real subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("JSON_WORKFLOW_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "json_workflow", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


# --- runs of run_once on the sandbox root -------------------------------------------------------------


def run(config):
    """run_once on `config` at FIXED_NOW, so failed names are predictable."""
    return run_once(config, clock=lambda: FIXED_NOW)


def places_of(root: Path, name: str) -> set[str]:
    """Folders (relative to root) holding a file called `name`, the hot folder excluded."""
    return {os.path.dirname(rel) for rel in find(root, name) if not rel.startswith("JSON/")}


def assert_clean(root: Path, allowed: set[str] = frozenset()):
    """No temporary nor hidden name is left under `root`, except those in `allowed`."""
    assert leftovers(root, allowed) == []


def assert_each_once(root: Path, good: dict, bad: dict, consumer: Consumer) -> None:
    """Every valid file archived with its bytes, every invalid one set aside once, no copy seen twice downstream."""
    assert {n for n, count in consumer.seen.items() if count > 1} == set()
    for name, (client, data) in good.items():
        assert (root / "JSON_STORE" / client / name).read_bytes() == data
    for name, (_client, data) in bad.items():
        (failed,) = failed_entries(root, name)
        assert failed.read_bytes() == data


def assert_exactly_once(root: Path, good: dict, bad: dict, rank: set, consumer: Consumer, allowed=(".processing",)):
    """Every valid file archived with its bytes, every invalid one failed once, each RANK copy seen once; the
    hot folder empty, no temporary left (but the names in `allowed`)."""
    wait_for(lambda: set(consumer.seen) == rank, timeout=30, what="every RANK copy taken downstream")
    consumer.stop.set()
    consumer.join()
    assert_each_once(root, good, bad, consumer)
    assert not [p for p in (root / "JSON").rglob("*") if p.is_file()]
    assert leftovers(root, allowed=set(allowed)) == []


def trouble_records(caplog):
    """The log records of destinations found in trouble."""
    return [r for r in caplog.records if "Destination unavailable" in r.getMessage()]


# --- waiting, and the service as a subprocess ---------------------------------------------------------


def wait_for(condition, timeout: float = 15, what: str = "condition"):
    """Poll `condition` until it is true (and return its value) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        asked = time.monotonic()
        value = condition()
        if value:
            return value
        # A costly condition (a walk over thousands of files) is asked less often: the service it waits for has
        # the cores to itself at least nine tenths of the time; never more than half a second late.
        time.sleep(min(0.5, max(0.02, 9 * (time.monotonic() - asked))))
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_or_none(path: Path) -> bytes | None:
    """The file's bytes, or None while it is elsewhere (claimed for a moment, say)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_config(path: Path, root: Path, watch: str = "inotify", extra: str = "", scan_interval: float = 2) -> Path:
    """A service configuration: files stable after 1 s, a periodic scan every `scan_interval` seconds."""
    # The dashboard on a port of its own (the log says which): services of several tests never collide.
    web = "" if "[http]" in extra else '\n[http]\nlisten = "127.0.0.1:0"\n'
    if STORE["url"] and "[store]" not in extra:
        web += f'\n[store]\nurl = "{STORE["url"]}"\n'
    path.write_text(
        f'root = "{root}"\nwatch = "{watch}"\nstable_seconds = 1\nscan_interval = {scan_interval:g}\n'
        f"retry_max_seconds = 1\nshutdown_timeout = 10\n{extra}{web}"
    )
    return path


class Service:
    """json-workflow run as a subprocess, with its log."""

    def __init__(self, root: Path, config: Path, env: dict | None = None, log: Path | None = None):
        self.root, self.config, self.env = root, config, env
        self.log = log or root.parent / "service.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Service:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "json_workflow", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),
            env={**os.environ, **(self.env or {})},
        )
        try:
            wait_for(lambda: "Watching" in self.text(), what="the service to start watching")
        except BaseException:
            self.process.kill()  # never leave a service running behind a failed test
            self.process.wait()
            raise
        return self

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    @property
    def url(self) -> str:
        """The dashboard's address, from the log line that announces it."""
        found = wait_for(lambda: re.search(r"health checks at (http://\S+/)", self.text()), what="the dashboard")
        return found.group(1)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)


def drop_atomically(root: Path, client: str, name: str, data: bytes) -> Path:
    """Write outside the hot folder, then rename in (what well-behaved exporters do)."""
    staging = root.parent / "staging"
    staging.mkdir(exist_ok=True)
    (root / "JSON" / client).mkdir(parents=True, exist_ok=True)
    temp = staging / name
    temp.write_bytes(data)
    target = root / "JSON" / client / name
    os.rename(temp, target)
    return target


class Consumer(threading.Thread):
    """A downstream tool that takes (deletes) each file from a folder as soon as it appears."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.seen, self.stop = folder, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.folder.is_dir():
                for entry in os.scandir(self.folder):
                    if not entry.name.startswith("."):
                        self.seen[entry.name] = self.seen.get(entry.name, 0) + 1
                        os.unlink(entry.path)
            time.sleep(0.002)


# --- the daily report's figures ------------------------------------------------------------------------

TITLE = "JSON Workflow Daily Report"
SECTIONS = ["cards", "performance", "clients", "destinations", "hours", "errors", "reconciliation"]


def figures(**changes) -> DayFigures:
    """The sample day (five clients, two errors, reconciled), with some fields changed."""
    return dataclasses.replace(sample_figures(), **changes)


def large_figures() -> DayFigures:
    """A busy day on which the clocks went back: 40 clients, 25 destinations, 25 hours, 10 long errors."""
    clients = [
        ClientFigures(
            f"CLIENT-WITH-A-LONG-NAME-{i:02d}",
            1000 + i,
            990 + i,
            i,
            i % 3,
            [("PRODUCTION", 600), ("CAMPAIGN", 300), ("CELTRA", 100 + i)],
        )
        for i in range(40)
    ]
    hours = [
        (f"{h:02d}:00 {zone}", 50 * h)
        for h, zone in [(h, "BST") for h in range(2)] + [(1, "GMT")] + [(h, "GMT") for h in range(2, 24)]
    ]
    long = "Celtra - Create_Rename - Project_Design File - with a deliberately long folder name"
    return figures(
        processed=41_000,
        archived=40_990,
        errors=10,
        success_rate=100 * 40_990 / 41_000,
        clients=clients,
        destinations=[(f"/data/PRODUCTION/SYNC/MAKE/{long} {i}/IN/", 500 + i) for i in range(25)],
        hours=hours,
        last_errors=[
            Problem(
                f"23:{i:02d}:00",
                f"CLIENT-WITH-A-LONG-NAME-{i:02d}",
                f"CLIENT-WITH-A-LONG-NAME-{i:02d}/{'very_long_file_name_' * 6}{i}.json",
                "parse: " + "Expecting ',' delimiter: line 1 column 2 (char 1) " * 4,
            )
            for i in range(10)
        ],
        unaccounted=[f"CLIENT-WITH-A-LONG-NAME-01/{'lost_file_' * 8}{i}.json" for i in range(5)],
    )


# --- filesystems -----------------------------------------------------------------------------------------


@pytest.fixture
def bind_archive(tmp_path):
    """A folder on the test's filesystem seen through a bind mount: same device, another mount; skip if not root."""
    source, mount = tmp_path / "store-disk", tmp_path / "store"
    source.mkdir()
    mount.mkdir()
    yield from _mounted(["mount", "--bind", str(source)], mount)


@pytest.fixture
def failing_disk(tmp_path):
    """An ext4 filesystem whose flushes fail (EIO): its 64 MB image lives on a 4 MB tmpfs.

    Writes succeed into the page cache; writeback fails once the tmpfs is full, as on a dying disk.
    """
    backing, mount = tmp_path / "failing-backing", tmp_path / "failing"
    for _ in mounted_tmpfs(backing, "4m"):
        image = backing / "disk.img"
        with open(image, "wb") as f:
            f.truncate(64 << 20)
        # No journal and no lazy initialisation: only the files written later reach for the missing space.
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=0", str(image)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        mount.mkdir()
        yield from _mounted(["mount", "-o", "loop", str(image)], mount)


@pytest.fixture
def exfat(tmp_path):
    """A 64 MB exFAT filesystem through FUSE, as on USB disks and many NAS shares: link(2) answers EPERM,
    renameat2's RENAME_NOREPLACE EINVAL, and every mode is 0777. Skip where it cannot be mounted."""
    image, mount = tmp_path / "exfat.img", tmp_path / "exfat"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    mount.mkdir()
    try:
        subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True, timeout=60)
        device = subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot make an exFAT filesystem here (exfatprogs, a loop device, root): {e}")
    try:
        yield from _mounted(["mount.exfat-fuse", device], mount)
    finally:
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True, timeout=10)


def mounted_tmpfs(mount: Path, size: str):
    """Yield a real tmpfs of `size` at `mount` (another filesystem, or a disk that fills); skip if not root."""
    mount.mkdir(parents=True)
    yield from _mounted(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs"], mount)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KB tmpfs: another filesystem, and a disk that fills; skip if not root."""
    yield from mounted_tmpfs(tmp_path / "full", "64k")


# Fixtures that mount a filesystem: every test using one needs root, whichever file it is in.
ROOT_FIXTURES = {"bind_archive", "failing_disk", "exfat", "tiny_tmpfs"}


def pytest_collection_modifyitems(items):
    for item in items:
        if ROOT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root")


def _mounted(command: list[str], mount: Path):
    """Run `command mount`, yield `mount`, unmount it; skip the test when mounting is not allowed."""
    try:
        subprocess.run([*command, str(mount)], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount here ({' '.join(command)}): {e}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True, timeout=10)
