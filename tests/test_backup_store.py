"""The backup stores: compressed objects with checksums, streamed in and out. Each check
runs on the local directory store and on the SFTP store against a real OpenSSH server
started here (a free port on the loopback, a temporary host key and authorized key)."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hosting.backups.sftp_store import SFTPStore
from hosting.backups.store import CorruptObject, LocalStore, StoreError, get_store

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server for this module: (port, client key file, known_hosts)."""
    assert os.path.exists(SSHD), "openssh-server is missing (scripts/system-packages.sh)"
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True
        )
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    port = free_port()
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home}/host_key\n"
        f"AuthorizedKeysFile {home}/authorized_keys\nPidFile {home}/sshd.pid\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    host_key = (home / "host_key.pub").read_text().split()
    known = home / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "sshd died"
            assert time.monotonic() < deadline, "sshd did not listen"
            time.sleep(0.1)
    yield port, str(home / "client_key"), str(known)
    proc.terminate()
    proc.wait(10)


def sftp_store(sshd, root) -> SFTPStore:
    port, key, known = sshd
    user = pwd.getpwuid(os.getuid()).pw_name
    return SFTPStore(
        host="127.0.0.1", port=port, username=user, root=str(root), key_file=key,
        known_hosts=known,
    )  # fmt: skip


@pytest.fixture(params=["local", "sftp"])
def store(request, tmp_path):
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    # the SFTP server writes to this machine's disk: the same checks can look at it
    remote = sftp_store(request.getfixturevalue("sshd"), tmp_path / "store")
    yield remote
    remote.close()


def test_sftp_store_refuses_an_unknown_host_key(sshd, tmp_path):
    port, key, _ = sshd
    (tmp_path / "empty_known_hosts").write_text("")
    stranger = SFTPStore(
        host="127.0.0.1", port=port, username=pwd.getpwuid(os.getuid()).pw_name,
        root=str(tmp_path), key_file=key, known_hosts=str(tmp_path / "empty_known_hosts"),
    )  # fmt: skip
    with pytest.raises(StoreError, match="Cannot reach"):
        stranger.list()


def test_get_store_reads_an_sftp_url(sshd, settings, tmp_path):
    port, key, known = sshd
    user = pwd.getpwuid(os.getuid()).pw_name
    settings.BACKUP_STORE = f"sftp://{user}@127.0.0.1:{port}{tmp_path}/remote"
    settings.BACKUP_STORE_SSH_KEY = key
    settings.BACKUP_STORE_KNOWN_HOSTS = known
    remote = get_store()
    assert isinstance(remote, SFTPStore)
    put(remote, "9/obj.qcow2", b"hello" * 1000)
    assert (tmp_path / "remote" / "9" / "obj.qcow2.zst").exists()
    assert b"".join(remote.get("9/obj.qcow2")) == b"hello" * 1000


def put(store, key: str, data: bytes, chunk: int = 65536):
    with store.put(key) as writer:
        for at in range(0, len(data), chunk):
            writer.write(data[at : at + chunk])
        return writer.close()


def test_round_trip_is_compressed_and_checksummed(store):
    data = os.urandom(300_000) + bytes(5_000_000)  # random bytes, then empty space
    obj = put(store, "1/a/b.qcow2", data)
    assert obj.size == len(data)
    assert obj.stored_size < len(data) // 10  # zeros shrink to almost nothing
    assert b"".join(store.get("1/a/b.qcow2")) == data
    assert store.verify("1/a/b.qcow2") == obj
    assert store.list() == ["1/a/b.qcow2"]
    assert store.list("2/") == []


def test_a_damaged_object_is_caught(store):
    put(store, "1/x.qcow2", os.urandom(200_000))
    path = Path(store.data_path("1/x.qcow2"))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObject):
        store.verify("1/x.qcow2")


def test_an_aborted_write_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.put("1/y.qcow2") as writer:
        writer.write(b"partial")
        raise RuntimeError("the backup failed")
    assert store.list() == []
    assert not any(p.is_file() for p in Path(store.root).rglob("*"))


def test_delete_and_bad_keys(store):
    put(store, "1/z.qcow2", b"data")
    store.delete("1/z.qcow2")
    store.delete("1/z.qcow2")  # a missing one is fine
    assert store.list() == []
    for key in ("", "/etc/passwd", "1/../../x", "a//b"):
        with pytest.raises(StoreError):
            store.put(key)
    with pytest.raises(StoreError):
        store.stat("1/none.qcow2")
