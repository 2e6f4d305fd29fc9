"""How the LXC backend reaches a container host: the agent (lxc_agent.py) run on this
machine (`lxc:///PATH`) or over SSH (`lxc+ssh://USER@HOST[:PORT]/PATH`, paramiko, one
cached connection per host and process).

A call is `open(op, args)`: the JSON arguments go first on the agent's stdin, then
whatever the caller writes; `finish()` closes stdin, waits, and gives the agent's JSON
result or raises the backend error its exit reports. Output can be streamed instead with
`read()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import paramiko

from .errors import BackendError, DomainNotFound, HostUnreachable, OperationTimeout

AGENT = Path(__file__).with_name("lxc_agent.py")
CHUNK = 1 << 20


def agent_digest() -> str:
    return hashlib.sha256(AGENT.read_bytes()).hexdigest()[:16]


def _error(op: str, status: int, stderr: bytes, where: str) -> BackendError:
    try:
        report = json.loads(stderr.decode(errors="replace").strip().splitlines()[-1])
        message, kind = str(report["error"]), report.get("kind", "failed")
    except (ValueError, IndexError, KeyError, TypeError):
        text = stderr.decode(errors="replace").strip()[-500:]
        message, kind = f"The LXC agent on {where} failed ({op}, exit {status}): {text}", ""
    if kind == "not_found":
        return DomainNotFound(message)
    if kind == "busy":
        return OperationTimeout(message)
    return BackendError(message)


# the exit status of an operation whose agent file is not on the host: a host rebuilt (or a
# directory emptied) since this process installed it; `call` installs it again and retries
AGENT_MISSING = 199


class AgentMissing(HostUnreachable):
    pass


class Call:
    """One running agent operation."""

    op: str
    where: str

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, size: int = CHUNK) -> bytes:
        raise NotImplementedError

    def close_input(self) -> None:
        raise NotImplementedError

    def wait(self) -> tuple[int, bytes, bytes]:
        """(exit status, rest of stdout, stderr) once the agent is done."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def finish(self) -> Any:
        self.close_input()
        status, out, err = self.wait()
        if status == AGENT_MISSING:
            raise AgentMissing(f"The LXC agent is not on {self.where} (any more).")
        if status != 0:
            raise _error(self.op, status, err, self.where)
        return json.loads(out) if out.strip() else None


class Transport:
    lxcpath: str
    where: str

    def open(self, op: str, args: dict | None = None, *, checked: bool = True) -> Call:
        """Start `op`. A streaming caller cannot repeat it, so its agent is looked for on
        the host first (`checked`); `call` skips that and repeats when it was missing."""
        raise NotImplementedError

    def call(self, op: str, args: dict | None = None, *, payload: BinaryIO | None = None) -> Any:
        """Run `op` to the end; `payload` (a file) is streamed to its stdin."""
        try:
            return self._call_once(op, args, payload)
        except AgentMissing:
            self.forget_agent()
            if payload is not None:
                payload.seek(0)
            return self._call_once(op, args, payload)

    def _call_once(self, op: str, args: dict | None, payload: BinaryIO | None) -> Any:
        running = self.open(op, args, checked=False)
        try:
            if payload is not None:
                while chunk := payload.read(CHUNK):
                    running.write(chunk)
            return running.finish()
        except BaseException:
            running.abort()
            raise

    def forget_agent(self) -> None:
        """Check for the agent on the host again before the next operation."""
        return None

    def _request(self, args: dict | None) -> bytes:
        return json.dumps({**(args or {}), "lxcpath": self.lxcpath}).encode() + b"\n"


# --- this machine ------------------------------------------------------------------------------


class LocalCall(Call):
    def __init__(self, proc: subprocess.Popen, op: str, where: str):
        self.proc, self.op, self.where = proc, op, where
        self._err: list[bytes] = []
        # stderr drained aside, so that a chatty agent never blocks on a full pipe
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        self._err.append(self.proc.stderr.read())

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # the agent stopped: its exit says why
            self.proc.stdin.write(data)

    def read(self, size: int = CHUNK) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read(size)  # unbuffered: what is there, b"" at the end

    def close_input(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()

    def wait(self) -> tuple[int, bytes, bytes]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        status = self.proc.wait()
        self._reader.join()
        return status, out, b"".join(self._err)

    def abort(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()


class LocalTransport(Transport):
    def __init__(self, lxcpath: str):
        self.lxcpath = lxcpath
        self.where = "this machine"

    def open(self, op: str, args: dict | None = None, *, checked: bool = True) -> Call:
        proc = subprocess.Popen(
            [sys.executable, str(AGENT), op],
            bufsize=0,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        running = LocalCall(proc, op, self.where)
        running.write(self._request(args))
        return running


# --- over SSH ----------------------------------------------------------------------------------


class SSHCall(Call):
    def __init__(self, channel: paramiko.Channel, op: str, where: str):
        self.channel, self.op, self.where = channel, op, where

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the agent stopped reading: its exit says why
            self.channel.sendall(data)

    def read(self, size: int = CHUNK) -> bytes:
        return self.channel.recv(size)

    def close_input(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.shutdown_write()

    def wait(self) -> tuple[int, bytes, bytes]:
        out = bytearray()
        while chunk := self.channel.recv(CHUNK):
            out += chunk
        status = self.channel.recv_exit_status()
        err = bytearray()
        while self.channel.recv_stderr_ready() or not self.channel.exit_status_ready():
            chunk = self.channel.recv_stderr(CHUNK)
            if not chunk:
                break
            err += chunk
        self.channel.close()
        return status, bytes(out), bytes(err)

    def abort(self) -> None:
        self.channel.close()


_clients: dict[tuple, paramiko.SSHClient] = {}
_clients_lock = threading.Lock()
_agents_present: set[tuple] = set()


class SSHTransport(Transport):
    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        lxcpath: str,
        key_file: str | None,
        known_hosts: str | None,
        accept_new: bool,
        timeout: float,
    ):
        self.host, self.port, self.user, self.lxcpath = host, port, user, lxcpath
        self.key_file, self.known_hosts, self.accept_new = key_file, known_hosts, accept_new
        self.timeout = timeout
        self.where = f"{host}"
        self.agent_path = f"{lxcpath.rstrip('/')}/.paddock/agent-{agent_digest()}.py"

    @property
    def _key(self) -> tuple:
        return (self.user, self.host, self.port, self.key_file)

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        try:
            if self.known_hosts and Path(self.known_hosts).exists():
                client.load_host_keys(self.known_hosts)
            else:
                client.load_system_host_keys()
            policy = paramiko.AutoAddPolicy() if self.accept_new else paramiko.RejectPolicy()
            client.set_missing_host_key_policy(policy)
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=self.key_file,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=self.key_file is None,
            )
            if self.accept_new and self.known_hosts:
                Path(self.known_hosts).parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):
                    client.save_host_keys(self.known_hosts)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostUnreachable(
                f"The SSH host key of {self.host} changed; refusing to connect."
            ) from exc
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise HostUnreachable(f"Cannot reach {self.host} over SSH: {exc}") from exc
        return client

    def _client(self) -> paramiko.SSHClient:
        with _clients_lock:
            client = _clients.get(self._key)
            transport = client.get_transport() if client else None
            if client is None or transport is None or not transport.is_active():
                if client is not None:
                    client.close()
                client = self._connect()
                _clients[self._key] = client
                # a new connection may be to a reinstalled host: check its agent again
                for marker in [m for m in _agents_present if m[: len(self._key)] == self._key]:
                    _agents_present.discard(marker)
            return client

    def _exec(self, command: str) -> paramiko.Channel:
        for attempt in (1, 2):
            client = self._client()
            try:
                transport = client.get_transport()
                assert transport is not None
                channel = transport.open_session(timeout=self.timeout)
                channel.exec_command(command)
                return channel
            except (paramiko.SSHException, OSError, EOFError) as exc:
                with _clients_lock:
                    _clients.pop(self._key, None)
                client.close()
                if attempt == 2:
                    raise HostUnreachable(f"Lost the SSH connection to {self.host}: {exc}") from exc
        raise AssertionError("unreachable")

    def _ensure_agent(self) -> None:
        marker = (*self._key, self.agent_path)
        if marker in _agents_present:
            return
        path = shlex.quote(self.agent_path)
        folder = shlex.quote(self.agent_path.rsplit("/", 1)[0])
        install = f"mkdir -p {folder} && cat > {path}.tmp && mv {path}.tmp {path}"
        channel = self._exec(f"test -f {path} || {{ {install}; }}")
        running = SSHCall(channel, "install agent", self.where)
        running.write(AGENT.read_bytes())
        running.close_input()
        status, _out, err = running.wait()
        if status != 0:
            raise BackendError(
                f"Cannot install the LXC agent on {self.host}: {err.decode(errors='replace')}"
            )
        _agents_present.add(marker)

    def forget_agent(self) -> None:
        _agents_present.discard((*self._key, self.agent_path))

    def open(self, op: str, args: dict | None = None, *, checked: bool = True) -> Call:
        if checked:
            self.forget_agent()
        self._ensure_agent()
        path = shlex.quote(self.agent_path)
        channel = self._exec(
            f"test -f {path} || exit {AGENT_MISSING}; exec python3 {path} {shlex.quote(op)}"
        )
        running = SSHCall(channel, op, self.where)
        running.write(self._request(args))
        return running


def transport_for(uri: str, *, key_file, known_hosts, accept_new, timeout) -> Transport:
    parts = urlsplit(uri)
    if parts.scheme == "lxc":
        return LocalTransport(parts.path)
    return SSHTransport(
        host=parts.hostname or "",
        port=parts.port or 22,
        user=parts.username or "root",
        lxcpath=parts.path,
        key_file=key_file,
        known_hosts=known_hosts,
        accept_new=accept_new,
        timeout=timeout,
    )


def forget_connections() -> None:
    """Close every cached SSH connection (tests, a worker after fork)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        _agents_present.clear()
