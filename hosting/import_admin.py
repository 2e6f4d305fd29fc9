"""The admin's "Import OpenVZ container" page (linked from the servers' list): an archive
and a ve.conf in, a new container server and the import report out
(hosting/services/imports.py does the work and the permission check)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from . import openvz
from .access import caller_from_request
from .choices import VirtKind
from .models import Customer, Image, Plan
from .services.errors import NotPermitted, ServiceError
from .services.imports import import_openvz

VE_CONF_MAX_BYTES = 256 * 1024


class OpenVZImportForm(forms.Form):
    archive = forms.FileField(
        help_text="The container's private area as a tar (plain or gzip), its files at the "
        "root of the tar (e.g. tar -C /vz/private/101 -czf ct101.tar.gz .)."
    )
    ve_conf_file = forms.FileField(
        required=False, label="ve.conf file", help_text="/etc/vz/conf/<veid>.conf"
    )
    ve_conf_text = forms.CharField(
        required=False,
        label="or ve.conf text",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
    )
    customer = forms.ModelChoiceField(queryset=Customer.objects.order_by("name"))
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.filter(kind=VirtKind.CONTAINER, is_active=True).order_by("name")
    )
    image = forms.ModelChoiceField(
        queryset=Image.objects.filter(kind=VirtKind.CONTAINER, is_active=True).order_by("name"),
        required=False,
        help_text="Default: the first container image.",
    )
    hostname = forms.CharField(
        required=False, max_length=253, help_text="Default: the ve.conf's HOSTNAME."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("ve_conf_file")
        if upload is not None:
            if upload.size > VE_CONF_MAX_BYTES:
                raise forms.ValidationError("That ve.conf is too large to be one.")
            data["ve_conf"] = upload.read().decode("utf-8", errors="replace")
        elif data.get("ve_conf_text", "").strip():
            data["ve_conf"] = data["ve_conf_text"]
        else:
            raise forms.ValidationError("Give the ve.conf: a file or its text.")
        return data


def import_openvz_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("hosting.add_server"):
        raise PermissionDenied
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Import OpenVZ container",
    }
    form = OpenVZImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with data["archive"].open("rb") as archive:
                server, job, report = import_openvz(
                    archive=archive,
                    ve_conf=data["ve_conf"],
                    customer=data["customer"],
                    plan=data["plan"],
                    image=data["image"],
                    hostname=data["hostname"] or None,
                    caller=caller_from_request(request),
                )
        except NotPermitted as exc:
            raise PermissionDenied(exc.message) from exc
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            lines = [openvz.ReportLine(**line) for line in report]
            context.update(
                server=server,
                job=job,
                report=lines,
                not_mapped=openvz.not_mapped(lines),
                server_url=reverse("admin:hosting_server_change", args=[server.pk]),
                job_url=reverse("admin:hosting_job_change", args=[job.pk]),
            )
            return TemplateResponse(request, "admin/hosting/server/import_openvz.html", context)
    context["form"] = form
    return TemplateResponse(request, "admin/hosting/server/import_openvz.html", context)
