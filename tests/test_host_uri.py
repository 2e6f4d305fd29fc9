"""A host's libvirt URI: known transports only, no parameter that runs a program or picks a
socket, and onboarding opens nothing before that check (issue 7 #4)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from hosting.backends import BackendError, get_backend
from hosting.choices import HostState
from hosting.models import Host, Job
from hosting.services.hosts import refresh_host
from hosting.validators import validate_libvirt_uri

GOOD = [
    "test:///default",
    "test:///default?host=3",
    "test:///default?recovered",
    "qemu:///system",
    "qemu+ssh://root@hv1.example.com/system",
    "qemu+ssh://hv1.example.com:2222/system?no_tty=1&known_hosts_verify=normal",
    "qemu+tls://hv1.example.com:16514/system",
    "qemu+tcp://10.0.0.9/system",
    "qemu+ssh://[2001:db8::1]:22/system",
    # LXC hosts (hosting/backends/lxc_backend.py)
    "lxc:///var/lib/lxc",
    "lxc+ssh://root@ct1.example.com/var/lib/lxc",
    "lxc+ssh://root@10.0.0.9:2222/srv/paddock/lxc",
]
BAD = [
    "qemu+ext:///system?command=/bin/sh",
    "qemu+unix:///system?socket=/tmp/evil.sock",
    "qemu:///system?socket=/tmp/evil.sock",
    "qemu+ssh://hv1/system?command=/bin/sh",
    "qemu+ssh://hv1/system?netcat=/tmp/nc",
    "qemu+ssh://hv1/system?proxy=netcat",
    "qemu+ssh://hv1/system?keyfile=/etc/shadow",
    "qemu+ssh://hv1/system?known_hosts=/dev/null",
    "qemu+tls://hv1/system?pkipath=/tmp/certs",
    "qemu+tls://hv1/system?no_verify=1",
    "qemu+ssh://hv1/system?name=qemu+ext:///system",
    "qemu+ssh://hv1/system?%63ommand=/bin/sh",
    "qemu+ssh://hv1/system?no_tty=1;command=/bin/sh",
    "qemu+ssh://hv1/system?no_tty=1#x",
    "qemu+ssh://-oProxyCommand=touch/system",
    "qemu+ssh://user:secret@hv1/system",
    "qemu+ssh://hv1:99999/system",
    "qemu+libssh2://hv1/system",
    "qemu+ssh://hv1/session",
    "qemu:///session",
    "test:///etc/passwd",
    "test:///default?socket=/tmp/evil.sock",
    "test:///default?socket",
    "qemu+ssh://hv1/system?no_tty&command",
    "xen:///system",
    "qemu+ssh://hv1/system\n",
    "qemu+ssh://hv 1/system",
    "",
    "lxc:///var/lib/../../etc",
    "lxc:///var/lib/lxc?command=/bin/sh",
    "lxc://ct1/var/lib/lxc",
    "lxc:relative/path",
    "lxc+ssh://-oProxyCommand=touch/var/lib/lxc",
    "lxc+ssh://root:secret@ct1/var/lib/lxc",
    "lxc+ssh://ct1/var/lib/lxc#x",
    "lxc+ssh://ct1/var/lib/%2e%2e/etc",
    "lxc+ssh://ct1/var/lib/l xc",
    "lxc+ext:///var/lib/lxc",
]


@pytest.mark.parametrize("uri", GOOD)
def test_known_transports_are_accepted(uri):
    validate_libvirt_uri(uri)


@pytest.mark.parametrize("uri", BAD)
def test_dangerous_or_unknown_uris_are_refused(uri):
    with pytest.raises(ValidationError):
        validate_libvirt_uri(uri)


@pytest.mark.django_db
@pytest.mark.parametrize("uri", BAD[:6])
def test_api_refuses_a_bad_uri(staff, uri):
    client = APIClient()
    client.force_login(staff)
    resp = client.post(
        "/api/v1/hosts/",
        {"name": "evil", "libvirt_uri": uri, "storage_pool": "p"},
        format="json",
    )
    assert resp.status_code == 400
    assert "libvirt_uri" in resp.json()["error"]["fields"]
    assert not Host.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_admin_refuses_a_bad_uri(staff):
    client = Client()
    client.force_login(staff)
    resp = client.post(
        reverse("admin:hosting_host_add"),
        {
            "name": "evil",
            "libvirt_uri": "qemu+ext:///system?command=/bin/sh",
            "backend": "libvirt",
            "kind": "vm",
            "state": "offline",
            "queue": "paddock",
            "storage_pool": "p",
            "network": "default",
            "disk_mode": "overlay",
            "cpu_overcommit": "4",
            "ram_overcommit": "1",
        },
    )
    assert resp.status_code == 200
    errors = resp.context_data["adminform"].form.errors
    assert "is not allowed" in errors["libvirt_uri"][0], errors
    assert not Host.objects.exists() and not Job.objects.exists()


@pytest.fixture
def command_uri_host(tmp_path, db):
    """A host row saved past validation (raw SQL, an old row) whose URI runs a program."""
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    host = Host.objects.create(
        name="evil",
        libvirt_uri=f"qemu+ext:///system?command={script}",
        state=HostState.ONLINE,
    )
    return host, marker


def test_onboarding_opens_nothing_for_a_bad_uri(command_uri_host):
    host, marker = command_uri_host
    # when the host is refreshed (what onboarding does)
    with pytest.raises(BackendError, match="Refused host URI"):
        refresh_host(host=host)
    # then the program never ran, and the host is offline with the reason
    assert not marker.exists()
    host.refresh_from_db()
    assert host.state == HostState.OFFLINE
    assert "Refused host URI" in host.last_error


def test_backend_factory_refuses_a_bad_uri(command_uri_host):
    host, marker = command_uri_host
    with pytest.raises(BackendError, match="Refused libvirt URI"):
        get_backend(host).host_info()
    assert not marker.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("backend", "kind", "uri", "field"),
    [
        ("lxc", "container", "qemu+tcp://10.0.0.9/system", "libvirt_uri"),
        ("libvirt", "vm", "lxc:///var/lib/lxc", "libvirt_uri"),
        ("lxc", "vm", "lxc:///var/lib/lxc", "kind"),
    ],
)
def test_a_hosts_uri_and_kind_match_its_backend(backend, kind, uri, field):
    host = Host(name="mismatch", libvirt_uri=uri, backend=backend, kind=kind)
    with pytest.raises(ValidationError) as caught:
        host.full_clean()
    assert field in caught.value.message_dict


@pytest.mark.django_db
def test_the_lxc_backend_refuses_a_libvirt_uri():
    host = Host.objects.create(
        name="odd", libvirt_uri="qemu+ext:///system?command=/bin/sh", backend="lxc"
    )
    with pytest.raises(BackendError, match="Refused LXC URI"):
        get_backend(host)
