from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/servers/<uuid:uuid>/", consumers.ServerConsumer.as_asgi()),
    path("ws/hosts/<int:host_id>/", consumers.HostConsumer.as_asgi()),
    path("ws/fleet/", consumers.FleetConsumer.as_asgi()),
]
