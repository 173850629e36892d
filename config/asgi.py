"""ASGI entry point, served by daphne: ``daphne config.asgi:application``.

HTTP goes through the body-size guard into Django (async views stream SSE); the WebSocket mode of
the Responses API will be added here as a Channels consumer.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

from api.asgi import BodyLimitMiddleware  # noqa: E402
from api.handler import ReusedThreadASGIHandler  # noqa: E402

# Django's ASGIHandler, reusing request threads instead of starting one per request.
django_asgi_app = ReusedThreadASGIHandler()

# Static files (the admin's assets) are answered before the middleware chain, from the installed
# apps; everything else goes through the body-size guard into Django.
application = ProtocolTypeRouter(
    {"http": ASGIStaticFilesHandler(BodyLimitMiddleware(django_asgi_app))}
)
