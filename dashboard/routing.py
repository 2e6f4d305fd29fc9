from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/servers/<uuid:uuid>/", consumers.ServerConsumer.as_asgi()),
]
