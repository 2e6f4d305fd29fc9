"""FilterSets shared by the REST API and the dashboard lists."""

from __future__ import annotations

import django_filters

from .choices import JobKind, JobStatus, ServerState
from .models import Customer, Job, Server


class ServerFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=ServerState.choices)
    q = django_filters.CharFilter(field_name="hostname", lookup_expr="icontains", label="Search")

    class Meta:
        model = Server
        fields = ["state", "host", "customer", "plan", "image"]


class JobFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    kind = django_filters.MultipleChoiceFilter(choices=JobKind.choices)
    server = django_filters.UUIDFilter(field_name="server__uuid")

    class Meta:
        model = Job
        fields = ["status", "kind", "server", "host"]


class CustomerFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Search")

    class Meta:
        model = Customer
        fields = ["status", "external_ref"]
