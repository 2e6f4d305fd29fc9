"""Connections: one host that does not answer holds up nobody else.

The dead host is a real TCP listener that accepts and never speaks (as a hung libvirtd,
or a host behind a firewall that lets the handshake through, would): libvirt's connect
waits on it. Meanwhile another host's backend calls and jobs must complete.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
from rest_framework.test import APIClient

from hosting.backends import BackendError, HostUnreachable
from hosting.backends.libvirt_backend import LibvirtBackend
from hosting.choices import JobStatus

from .test_hosts import add_host
from .test_provisioning import wait_job

# a bound on how long a test waits for something that must happen, so that a regression
# fails instead of hanging the suite; never a measure of speed
PATIENCE = 60


class SilentHost:
    """A TCP port that accepts connections and never answers, until released."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            self.accepted.set()

    def release(self) -> None:
        """Hang up on every caller, and refuse new ones: their connect fails at once."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.sock.close()
        self.thread.join()
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()


@pytest.fixture
def staff_client(staff):
    client = APIClient()
    client.force_login(staff)
    return client


@pytest.fixture
def silent_host():
    host = SilentHost()
    yield host
    host.release()


def in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_host_that_does_not_answer_does_not_stall_another(silent_host):
    dead = LibvirtBackend(uri=silent_host.uri, pool="p", connect_timeout=300)
    alive = LibvirtBackend(uri="test:///default?connections=1", pool="default-pool")
    # given a connect to the dead host that is waiting for an answer
    waiting, waiting_out = in_thread(dead.host_info)
    assert silent_host.accepted.wait(PATIENCE), "libvirt never connected to the silent host"
    # when another host is asked something meanwhile
    other, other_out = in_thread(alive.host_info)
    other.join(PATIENCE)
    # then it answers while the dead host's connect still waits
    assert not other.is_alive(), "the live host's call was held up by the dead host"
    assert other_out["result"].cpus == 16
    assert waiting.is_alive()
    # and when the dead host hangs up, its caller gets the project's error
    silent_host.release()
    waiting.join(PATIENCE)
    assert isinstance(waiting_out.get("error"), BackendError), waiting_out


def test_a_connect_without_answer_times_out(silent_host):
    backend = LibvirtBackend(uri=silent_host.uri, pool="p", connect_timeout=0.5)
    with pytest.raises(HostUnreachable, match=r"no answer within 0\.5 s") as info:
        backend.host_info()
    assert info.value.transient
    assert f"cannot reach {silent_host.uri}" in info.value.message


def test_a_second_caller_of_a_host_that_does_not_answer_gives_up_too(silent_host):
    first_caller = LibvirtBackend(uri=silent_host.uri, pool="p", connect_timeout=300)
    first, _ = in_thread(lambda: first_caller.state("x"))
    assert silent_host.accepted.wait(PATIENCE)
    second = LibvirtBackend(uri=silent_host.uri, pool="p", connect_timeout=0.2)
    with pytest.raises(HostUnreachable, match="earlier connection attempt is still waiting"):
        second.state("x")
    silent_host.release()
    first.join(PATIENCE)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_dead_hosts_job_does_not_stall_another_hosts_job(
    settings, silent_host, celery_worker, staff_client
):
    settings.CONNECT_TIMEOUT = 300
    settings.JOB_MAX_RETRIES = 0  # the dead host's job fails as soon as the host hangs up
    # given a host whose onboarding job is stuck connecting (one worker thread of two)
    dead = add_host(staff_client, "hv-dead", silent_host.uri)
    assert silent_host.accepted.wait(PATIENCE)
    # when another host is added meanwhile
    alive = add_host(staff_client, "hv-alive", "test:///default?connections=2")
    # then its job completes while the dead host's job still runs
    job = wait_job(alive.jobs.get().pk, timeout=PATIENCE)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert dead.jobs.get().status == JobStatus.RUNNING
    # and the dead host's job fails with the reason once the host hangs up
    silent_host.release()
    failed = wait_job(dead.jobs.get().pk, timeout=PATIENCE)
    assert failed.status == JobStatus.FAILED
    assert "cannot reach" in failed.error


@pytest.mark.parametrize(
    "text",
    [
        # a call whose host stopped answering its pings
        "internal error: connection closed due to keepalive timeout",
        # a call on a cached connection whose daemon died since it was last seen alive
        "internal error: client socket is closed",
    ],
)
def test_a_connection_closed_under_a_call_is_an_unreachable_host(text):
    import libvirt

    from hosting.backends.libvirt_connections import translated

    error = libvirt.libvirtError(text)
    error.err = (
        libvirt.VIR_ERR_INTERNAL_ERROR,
        libvirt.VIR_FROM_RPC,
        text,
        libvirt.VIR_ERR_ERROR,
        "",
        None,
        None,
        -1,
        -1,
    )
    with (
        pytest.raises(HostUnreachable, match=text.removeprefix("internal error: ")),
        translated("list domains", "qemu+tcp://192.0.2.1/system"),
    ):
        raise error
