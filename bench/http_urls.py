"""The panel's URLs plus one bare Django view, mounted only by bench/http_settings.py.

`/bench/servers/` returns the same 100 rows as `GET /api/v1/servers/?page_size=100`, as
JSON, with nothing between the ORM and the response: no authentication, no DRF, no
serializer. Served by the same server stack, it is the floor the API is measured
against.
"""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.urls import urlpatterns as panel_urlpatterns
from hosting.models import IPAddress, Server

FIELDS = (
    "id",
    "uuid",
    "customer_id",
    "plan_id",
    "image_id",
    "host__name",
    "hostname",
    "state",
    "state_message",
    "domain_name",
    "mac_address",
    "created_at",
    "updated_at",
    "terminated_at",
)


def bare_servers(request: HttpRequest) -> JsonResponse:
    rows = list(Server.objects.order_by("-created_at", "-id").values(*FIELDS)[:100])
    addresses: dict[int, list[str]] = {row["id"]: [] for row in rows}
    for server_id, address in IPAddress.objects.filter(server_id__in=list(addresses)).values_list(
        "server_id", "address"
    ):
        addresses[server_id].append(address)
    for row in rows:
        row["addresses"] = addresses[row["id"]]
    return JsonResponse({"count": len(rows), "results": rows})


urlpatterns = [path("bench/servers/", bare_servers), *panel_urlpatterns]
