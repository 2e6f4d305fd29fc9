"""A backup store on an SSH server, over SFTP (paramiko): the same files as LocalStore
(`<key>.zst` and `<key>.json` under a root directory), written and renamed the same way.

    BACKUP_STORE=sftp://backup@store.example.net:22/srv/paddock
    BACKUP_STORE_SSH_KEY=/etc/paddock/backup_key

The server's host key must be known (BACKUP_STORE_KNOWN_HOSTS, else ~/.ssh/known_hosts):
an unknown one is refused, never accepted blindly.
"""

from __future__ import annotations

import contextlib
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast
from urllib.parse import unquote, urlsplit

import paramiko

from .store import FileStore, StoreError


class SFTPStore(FileStore):
    def __init__(
        self,
        *,
        host: str,
        root: str,
        username: str,
        port: int = 22,
        key_file: str | None = None,
        known_hosts: str | None = None,
        timeout: float = 15.0,
    ):
        self.host, self.port, self.username = host, port, username
        self.root = root.rstrip("/") or "/"
        self.key_file, self.known_hosts, self.timeout = key_file, known_hosts, timeout
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    @classmethod
    def from_url(cls, url: str, *, key_file: str | None = None) -> SFTPStore:
        from django.conf import settings

        parts = urlsplit(url)
        if parts.scheme != "sftp" or not parts.hostname or not parts.username:
            raise StoreError("BACKUP_STORE must look like sftp://user@host[:port]/path.")
        return cls(
            host=parts.hostname,
            port=parts.port or 22,
            username=unquote(parts.username),
            root=unquote(parts.path) or "/",
            key_file=key_file,
            known_hosts=settings.BACKUP_STORE_KNOWN_HOSTS or None,
        )

    @property
    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is None:
                client = paramiko.SSHClient()
                if self.known_hosts:
                    client.load_host_keys(self.known_hosts)
                else:
                    client.load_system_host_keys()
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
                try:
                    client.connect(
                        self.host,
                        port=self.port,
                        username=self.username,
                        key_filename=self.key_file,
                        timeout=self.timeout,
                        allow_agent=False,
                        look_for_keys=self.key_file is None,
                    )
                except (OSError, paramiko.SSHException) as exc:
                    raise StoreError(f"Cannot reach the backup store {self.host}: {exc}") from exc
                self._client, self._sftp = client, client.open_sftp()
            return self._sftp

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = self._sftp = None

    def open(self, path: str, mode: str) -> IO[bytes]:
        try:
            fh = self.sftp.open(path, mode)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == 2:
                raise FileNotFoundError(path) from exc
            raise StoreError(f"{path} on the backup store: {exc}") from exc
        fh.set_pipelined(True)
        return cast(IO[bytes], fh)

    def replace(self, source: str, target: str) -> None:
        self.sftp.posix_rename(source, target)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.sftp.remove(path)

    def makedirs(self, path: str) -> None:
        missing = []
        current = path
        while current not in ("", "/"):
            try:
                self.sftp.stat(current)
                break
            except FileNotFoundError:
                missing.append(current)
                current = str(Path(current).parent)
        for directory in reversed(missing):
            self.sftp.mkdir(directory)

    def walk_files(self) -> Iterator[str]:
        pending = [self.root]
        while pending:
            directory = pending.pop()
            try:
                entries = self.sftp.listdir_attr(directory)
            except FileNotFoundError:
                continue
            for entry in entries:
                path = f"{directory}/{entry.filename}"
                if stat.S_ISDIR(entry.st_mode or 0):
                    pending.append(path)
                else:
                    yield path[len(self.root) + 1 :]
