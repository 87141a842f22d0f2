"""A real SFTP server for the tests: Debian's sshd on a loopback port, its own host key, and one user
(`nobody`, unprivileged) who logs in with a key the tests make and may only use SFTP.

sshd must start as root to become that user; CI runs the tests as root (as it runs PostgreSQL's as
`nobody`, tests/pg_server.py). Uploads land in `uploads`, owned by `nobody`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534


@dataclass
class SftpServer:
    top: Path
    port: int
    key_file: Path  # the user's private key
    known_hosts: Path  # the server's host key, as ssh-keyscan would give it
    uploads: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"sftp://nobody@127.0.0.1:{self.port}{self.uploads}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.top / "sshd_config")],
            stderr=open(self.top / "sshd.log", "ab"),
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(self.top / 'sshd.log').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """sshd and every session it serves: the connections drop, as when the server goes down."""
        if self.process is not None and self.process.poll() is None:
            sessions = _descendants(self.process.pid)
            self.process.terminate()
            self.process.wait(timeout=10)
            for pid in sessions:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def files(self) -> dict[str, bytes]:
        """What is uploaded (hidden temporaries too), by path below `uploads`."""
        return {str(p.relative_to(self.uploads)): p.read_bytes() for p in self.uploads.rglob("*") if p.is_file()}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextlib.contextmanager
def sftp_server() -> Iterator[SftpServer]:
    """An SFTP server until the block ends."""
    top = Path(tempfile.mkdtemp(prefix="jw-sshd-"))
    os.chmod(top, 0o755)  # nobody reaches its uploads
    _keygen(top / "host")
    _keygen(top / "user")
    (top / "authorized_keys").write_text((top / "user.pub").read_text())
    uploads = top / "uploads"
    uploads.mkdir()
    os.chown(uploads, NOBODY, NOBODY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (top / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {top / 'host'}\nPidFile {top / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {top / 'authorized_keys'}\nAllowUsers nobody\nPermitRootLogin no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\nForceCommand internal-sftp\nLogLevel ERROR\n"
    )
    host_key = (top / "host.pub").read_text().split()
    (top / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    server = SftpServer(top, port, top / "user", top / "known_hosts", uploads)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(top, ignore_errors=True)
