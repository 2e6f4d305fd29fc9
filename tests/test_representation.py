"""The fast representation (hosting/api/representation.py) and the orjson renderer give
what DRF's own code gives, field for field and byte for byte."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from hosting.api import serializers as s
from hosting.api.renderers import ORJSONRenderer
from hosting.api.representation import FastRepresentationMixin
from hosting.choices import JobKind, JobStatus, ServerState
from hosting.models import Server

from .factories import (
    CustomerFactory,
    HostFactory,
    ImageFactory,
    IPPoolFactory,
    JobFactory,
    PlanFactory,
    ServerFactory,
    SSHKeyFactory,
    UserFactory,
)


def drf_representation(serializer, instance) -> dict:
    """What DRF's Serializer.to_representation gives for the same serializer."""
    return super(FastRepresentationMixin, serializer).to_representation(instance)


@pytest.fixture
def rows(db):
    host = HostFactory(cpu_overcommit=Decimal("4.0"), last_seen=timezone.now())
    customer = CustomerFactory(external_ref="crm-1")
    pool = IPPoolFactory()
    placed = ServerFactory(customer=customer, host=host, state=ServerState.RUNNING)
    unplaced = ServerFactory(
        customer=customer, host=None, state=ServerState.PENDING, state_message="wait"
    )
    Server.objects.filter(pk=unplaced.pk).update(terminated_at=timezone.now() - timedelta(1))
    from hosting.models import IPAddress

    IPAddress.objects.create(pool=pool, server=placed, address="10.0.0.5")
    job = JobFactory(
        server=placed,
        kind=JobKind.REBOOT,
        status=JobStatus.SUCCEEDED,
        requested_by=UserFactory(),
        finished_at=timezone.now(),
    )
    host_job = JobFactory(server=None, host=host, kind=JobKind.HOST_REFRESH)
    servers = list(Server.objects.all())
    return {
        s.ServerSerializer: servers,
        s.ProviderServerSerializer: servers,
        s.JobSerializer: [job, host_job],
        s.ProviderJobSerializer: [job, host_job],
        s.PlanSerializer: [PlanFactory(monthly_price=Decimal("12.50"))],
        s.ImageSerializer: [ImageFactory(cloud_init=False)],
        s.ProviderImageSerializer: [ImageFactory(cloud_init=True)],
        s.HostSerializer: [host],
        s.CustomerSerializer: [customer],
        s.SSHKeySerializer: [SSHKeyFactory(customer=customer)],
    }


def test_every_fast_serializer_matches_drf(rows):
    for serializer_class, instances in rows.items():
        assert issubclass(serializer_class, FastRepresentationMixin)
        serializer = serializer_class(instances, many=True)
        fast = serializer.data
        drf = [drf_representation(serializer.child, instance) for instance in instances]
        assert fast == drf, serializer_class.__name__
        assert list(fast[0]) == list(drf[0])  # the same keys in the same order


def test_page_of_servers_with_attached_rows_matches_the_prefetch(rows):
    for serializer_class in (s.ServerSerializer, s.ProviderServerSerializer):
        prefetched = Server.objects.select_related("host").prefetch_related("addresses__pool").all()
        attached = list(Server.objects.all())
        s.attach_page(attached)
        assert serializer_class(attached, many=True).data == (
            serializer_class(list(prefetched), many=True).data
        )
    data = s.ProviderServerSerializer(attached, many=True).data
    placed = next(row for row in data if row["host"])
    assert placed["addresses"] == [{"address": "10.0.0.5", "family": 4}]


def test_orjson_renderer_writes_what_drf_writes(rows):
    data = {
        "servers": s.ServerSerializer(rows[s.ServerSerializer], many=True).data,
        "jobs": s.JobSerializer(rows[s.JobSerializer], many=True).data,
        "plans": s.PlanSerializer(rows[s.PlanSerializer], many=True).data,
        "text": 'naïve \u2028 line \u2029 end "quoted" </script>',
        "number": 1.5,
        "decimal": Decimal("2.25"),
        "when": timezone.now(),
        "none": None,
    }
    fast = ORJSONRenderer().render(data)
    drf = JSONRenderer().render(data)
    assert json.loads(fast) == json.loads(drf)
    assert fast == drf
