"""FilterSets shared by the REST API and the dashboard lists."""

from __future__ import annotations

import django_filters

from .access import request_access
from .choices import JobKind, JobStatus, ServerState
from .models import Customer, Host, Job, Server


# Filter choices are what the caller may see: naming another customer (or a host, for a
# customer) is "not a valid choice", exactly as naming an id that does not exist.
def visible_customers(request):
    if request is None:
        return Customer.objects.none()
    return Customer.objects.visible_to(request_access(request))


def visible_hosts(request):
    if request is None or not request_access(request).all_customers:
        return Host.objects.none()
    return Host.objects.all()


class ServerFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=ServerState.choices)
    q = django_filters.CharFilter(field_name="hostname", lookup_expr="icontains", label="Search")
    customer = django_filters.ModelChoiceFilter(queryset=visible_customers)
    host = django_filters.ModelChoiceFilter(queryset=visible_hosts)

    class Meta:
        model = Server
        fields = ["state", "host", "customer", "plan", "image"]


class JobFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    kind = django_filters.MultipleChoiceFilter(choices=JobKind.choices)
    server = django_filters.UUIDFilter(field_name="server__uuid")
    host = django_filters.ModelChoiceFilter(queryset=visible_hosts)

    class Meta:
        model = Job
        fields = ["status", "kind", "server", "host"]


class CustomerFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Search")

    class Meta:
        model = Customer
        fields = ["status", "external_ref"]
