"""ASGI entry point, served by daphne: ``daphne config.asgi:application``.

HTTP goes through the body-size guard into Django (async views stream SSE); WebSocket upgrades of
``/v1/responses`` (and Azure's ``/openai/v1/responses``) go to the Responses WebSocket consumer,
any other WebSocket path is refused at the handshake.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django
from channels.routing import ProtocolTypeRouter, URLRouter
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.urls import re_path

django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

from api.asgi import BodyLimitMiddleware  # noqa: E402
from api.handler import ReusedThreadASGIHandler  # noqa: E402
from responses.websocket import (  # noqa: E402
    RefusedWebSocketConsumer,
    ResponsesWebSocketConsumer,
)

if "daphne.http_protocol" in sys.modules:
    # Served by daphne: what it decides before calling the application follows the same rules.
    from api.daphne_edge import install

    install()

# Django's ASGIHandler, reusing request threads instead of starting one per request.
django_asgi_app = ReusedThreadASGIHandler()

# WebSocket: authentication is the API key on the handshake (no cookies, so no origin check).
websocket_app = URLRouter(
    [
        # Channels routes with Django's re_path; django-stubs type its target as a view only.
        re_path(r"^/?(?:openai/)?v1/responses$", ResponsesWebSocketConsumer.as_asgi()),  # type: ignore[arg-type,list-item]
        re_path(r"", RefusedWebSocketConsumer.as_asgi()),  # type: ignore[arg-type,list-item]
    ]
)

# The HTTP edge (body limits and timeouts, URL length, security headers) wraps everything;
# static files (the admin's assets) are answered inside it, before Django's middleware chain.
application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": websocket_app,
    }
)
