"""A real PostgreSQL for the tests: Debian's binaries, a cluster in a temporary folder, a Unix socket only.

initdb refuses to run as root, so as root the cluster belongs to `nobody` (setpriv). Each test gets a
database of its own (`PgServer.database`); a test that stops or restarts the server makes its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

USER = "jw"


def _binaries() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise RuntimeError("PostgreSQL's server binaries are not installed (Debian: apt-get install postgresql)")
    return Path(versions[-1]).parent


class PgServer:
    """One cluster: `start`, `stop`, `restart`; `url(db)` for json-workflow, `admin()` for the test."""

    def __init__(self, fsync: bool = False, where: Path | None = None) -> None:
        """`fsync` off for the tests (their data is thrown away); on for a benchmark, in `where` (its disk)."""
        self.bin = _binaries()
        self.top = Path(tempfile.mkdtemp(prefix="jw-pg-", dir=where))
        self.data, self.socket = self.top / "data", self.top / "socket"
        self.socket.mkdir()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            nobody = 65534
            os.chown(self.top, nobody, nobody)
            os.chown(self.socket, nobody, nobody)
            self.as_owner = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", "--"]
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = ''\nunix_socket_directories = '{self.socket}'\n"
                f"fsync = {'on' if fsync else 'off'}\nmax_connections = 200\nshared_buffers = 64MB\n"
            )
        self.start()

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / program), *args], check=True, capture_output=True)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.top / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.top / "server.log"), "-m", "fast", "-w", "restart")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@/{database}?host={self.socket}"

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True)

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with self.admin() as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def terminate(self, application_name: str) -> int:
        """pg_terminate_backend every connection named so; how many there were."""
        with self.admin() as db:
            rows = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            ).fetchall()
        return len(rows)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(self.top, ignore_errors=True)


def wait_until_up(server: PgServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.admin().close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
