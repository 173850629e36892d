"""ASGI entry point, served by daphne: ``daphne config.asgi:application``.

HTTP goes through the body-size guard into Django (async views stream SSE); the WebSocket mode of
the Responses API will be added here as a Channels consumer.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

from api.asgi import BodyLimitMiddleware  # noqa: E402
from api.handler import ReusedThreadASGIHandler  # noqa: E402

if "daphne.http_protocol" in sys.modules:
    # Served by daphne: what it decides before calling the application follows the same rules.
    from api.daphne_edge import install  # noqa: E402

    install()

# Django's ASGIHandler, reusing request threads instead of starting one per request.
django_asgi_app = ReusedThreadASGIHandler()

# The HTTP edge (body limits and timeouts, URL length, security headers) wraps everything;
# static files (the admin's assets) are answered inside it, before Django's middleware chain.
application = ProtocolTypeRouter(
    {"http": BodyLimitMiddleware(ASGIStaticFilesHandler(django_asgi_app))}
)
