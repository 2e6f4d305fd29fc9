"""The testbed itself: up twice is harmless, down leaves nothing behind."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management import call_command

from hosting.models import Host
from testbed import layout
from testbed.hosts import down_all, libvirtd_alive
from testbed.layout import TestbedHost

from ..factories import TEST_QUEUE

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [n for n in out.split() if n.startswith(layout.NETNS_PREFIX)]


def test_up_twice_then_down_after_a_killed_run(testbed):
    # given a testbed that is up; when it is brought up again, nothing changes
    pids = [TestbedHost(i).pidfile.read_text() for i in (1, 2)]
    call_command("testbed", "up", "--hosts", "2", "--queue", TEST_QUEUE)
    assert [TestbedHost(i).pidfile.read_text() for i in (1, 2)] == pids
    assert Host.objects.filter(name__startswith="tb-hv").count() == 2
    # when a run is killed (its libvirtd dies, its namespaces stay) and down runs
    subprocess.run(["kill", "-9", pids[0]], check=True)
    down_all()
    # then no namespace, link, daemon or directory of the testbed is left
    assert namespaces() == []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert layout.BRIDGE not in links and layout.NETNS_PREFIX not in links
    assert not any(libvirtd_alive(TestbedHost(i)) for i in (1, 2))
    assert not layout.root_dir().exists()
