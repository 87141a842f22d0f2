"""A copy uploaded to an SFTP server: under a hidden temporary name, then renamed into place.

The temporary is named after the copy's idempotency key, so an upload a crash interrupted is written
over and finished by the next attempt of the same version. A file already there with the same bytes
was delivered (its acknowledgement was lost); with other bytes it is never overwritten: the file fails,
saying so. The server's host key must be in `known_hosts`: an unknown or changed key is never accepted.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import queue
import socket
import threading
import urllib.parse

import paramiko

from json_workflow.delivery.model import Answer
from json_workflow.routing.remote import SFTP_PORT
from json_workflow.routing.rules import Rule


class SftpEndpoint:
    """The SSH connection of one sftp:// rule, and up to `concurrency` SFTP sessions over it, reused."""

    def __init__(self, rule: Rule, password: str | None):
        endpoint = rule.endpoint
        assert endpoint is not None
        self.rule, self.password = rule, password
        self.host, self.port, self.user = endpoint.host, endpoint.port or SFTP_PORT, endpoint.user
        self.client: paramiko.SSHClient | None = None
        self.sessions: queue.LifoQueue[paramiko.SFTPClient] = queue.LifoQueue()
        self._connecting = threading.Lock()  # the pool's threads share one connection: made once, not each

    def send(self, url: str, data: bytes, key: str, client: str, name: str) -> Answer:
        """Upload one copy into the URL's folder; never raises for the server's faults (they are its answer)."""
        folder = urllib.parse.urlsplit(url).path
        try:
            sftp = self._session()
        except (OSError, paramiko.SSHException, EOFError, ValueError) as e:  # ValueError: a damaged known_hosts
            self.close()
            return Answer(False, retry=True, reason=_said(e))
        try:
            answer = _upload(sftp, folder, name, key, data)
        except (OSError, paramiko.SSHException, EOFError) as e:
            sftp.close()
            if not isinstance(e, OSError) or e.errno is None:  # the connection, not the file: made again next time
                self.close()
            return Answer(False, retry=True, reason=_said(e))
        self.sessions.put(sftp)
        return answer

    def _session(self) -> paramiko.SFTPClient:
        try:
            return self.sessions.get_nowait()
        except queue.Empty:
            pass
        with self._connecting:
            client = self.client
            if client is None or not (transport := client.get_transport()) or not transport.is_active():
                client = self.client = self._connect()
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(self.rule.timeout)  # type: ignore[union-attr]
        return sftp

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(self.rule.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        timeout = self.rule.timeout
        client.connect(
            self.host, self.port, self.user, password=self.password, key_filename=self.rule.key_file,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
            allow_agent=False, look_for_keys=False,
        )  # fmt: skip
        return client

    def close(self) -> None:
        while not self.sessions.empty():
            self.sessions.get_nowait().close()
        if self.client is not None:
            self.client.close()
            self.client = None


def _upload(sftp: paramiko.SFTPClient, folder: str, name: str, key: str, data: bytes) -> Answer:
    final, temp = posixpath.join(folder, name), posixpath.join(folder, f".{name}.{key}.part")
    there = _read(sftp, final)
    if there is not None:
        if there == data:  # renamed into place before its acknowledgement was recorded
            return Answer(True)
        return Answer(False, reason=f"{final} is there with other bytes on the server; it is never overwritten")
    _make_folders(sftp, folder)
    try:
        with sftp.open(temp, "wb") as f:  # written over: an upload a crash interrupted is finished now
            f.write(data)
    except OSError:  # a full disk, a quota: no half file is left behind
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            sftp.remove(temp)
        raise
    try:
        sftp.posix_rename(temp, final)
    except OSError:  # no posix-rename@openssh.com: the plain rename, which refuses to replace
        sftp.rename(temp, final)
    return Answer(True)


def _read(sftp: paramiko.SFTPClient, path: str) -> bytes | None:
    try:
        with sftp.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _make_folders(sftp: paramiko.SFTPClient, folder: str) -> None:
    """The folder and those above it that are missing (a placeholder's folder is new for each value)."""
    try:
        sftp.stat(folder)
        return
    except FileNotFoundError:
        pass
    parent = posixpath.dirname(folder)
    if parent != folder:
        _make_folders(sftp, parent)
    try:
        sftp.mkdir(folder)
    except OSError:  # made meanwhile by another upload
        sftp.stat(folder)


def _said(error: BaseException) -> str:
    if isinstance(error, paramiko.BadHostKeyException):
        return f"the server's host key is not the one known_hosts has for {error.hostname}: never accepted"
    if isinstance(error, paramiko.SSHException) and "not found in known_hosts" in str(error):
        return f"{error}: an unknown host key is never accepted (add it with ssh-keyscan)"
    if isinstance(error, socket.timeout | TimeoutError):
        return "no answer in time"
    if isinstance(error, OSError) and (error.errno == errno.ENOSPC or str(error) == "Failure"):
        return f"the server failed the upload ({error}: a full disk or a quota?)"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
