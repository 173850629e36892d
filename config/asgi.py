"""ASGI entry point, served by daphne: ``daphne config.asgi:application``.

HTTP goes through the body-size guard into Django (async views stream SSE); the WebSocket mode of
the Responses API will be added here as a Channels consumer.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from api.asgi import BodyLimitMiddleware  # noqa: E402

application = ProtocolTypeRouter({"http": BodyLimitMiddleware(django_asgi_app)})
