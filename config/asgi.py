"""The ASGI application: HTTP through Django's WSGI handler, WebSockets through Channels.

Django's own ASGI handler runs each classic (sync) middleware and the view in a thread
hop of their own, a dozen hops per request; Paddock's views are all synchronous, so HTTP
requests run whole in a worker thread instead (a2wsgi: one hop per request, a pool of
WEB_THREADS threads per process). WebSockets (dashboard/routing.py) are Channels
consumers, async, with the session of the request that opened them.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()  # sets Django up (apps, settings) first

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402

http_application = WSGIMiddleware(
    get_wsgi_application(),  # type: ignore[arg-type]  # a response is an iterable of bytes
    workers=settings.WEB_THREADS,
)

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
