"""FilterSets shared by the REST API and the dashboard lists."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from .access import request_access
from .choices import JobKind, JobStatus, ServerState
from .models import Customer, Host, Image, Job, Plan, Server, SSHKey


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


def _catalogue_choices(model, request):
    """Active entries, and the inactive ones the caller's own servers use; everything for
    the provider."""
    if request is None:
        return model.objects.none()
    access = request_access(request)
    if access.all_customers:
        return model.objects.all()
    used = Server.objects.visible_to(access).values(model._meta.model_name)
    return model.objects.filter(Q(is_active=True) | Q(pk__in=used))


def visible_plans(request):
    return _catalogue_choices(Plan, request)


def visible_images(request):
    return _catalogue_choices(Image, request)


class ServerFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=ServerState.choices)
    q = django_filters.CharFilter(field_name="hostname", lookup_expr="icontains", label="Search")
    customer = django_filters.ModelChoiceFilter(queryset=visible_customers)
    host = django_filters.ModelChoiceFilter(queryset=visible_hosts)
    plan = django_filters.ModelChoiceFilter(queryset=visible_plans)
    image = django_filters.ModelChoiceFilter(queryset=visible_images)

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


class SSHKeyFilterSet(django_filters.FilterSet):
    customer = django_filters.ModelChoiceFilter(queryset=visible_customers)

    class Meta:
        model = SSHKey
        fields = ["customer"]
