"""A workaround for kombu 5.7's Redis transport (pinned in pyproject.toml; re-check on upgrade).

When the broker connection drops while a worker holds an unacknowledged message (a running
``acks_late`` task, or a pending ETA task such as a tool-output deadline), Celery's consumer
calls ``connection.collect()`` — which sets ``transport.client = None`` — before closing the
channel; closing restores the unacked messages and builds connection parameters from
``self.connection.client``, gets ``None``, and the ``AttributeError`` is not one of the errors the
consumer ignores: the worker logs "Unrecoverable error" and exits. Found by
``responses/tests/test_redis_restart.py`` (a real Redis restart).

Raising redis's ``ConnectionError`` instead makes it an ordinary broker error: the worker
reconnects, the running task completes, and the late ack is only logged as undeliverable (the
message is redelivered and finds nothing left to do: every task here is idempotent).
"""

from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis

_original_connparams = kombu_redis.Channel._connparams


def _connparams_or_connection_error(self, asynchronous=False):
    if self.connection is None or self.connection.client is None:
        raise redis.exceptions.ConnectionError("the broker connection was closed")
    return _original_connparams(self, asynchronous)


def apply() -> None:
    kombu_redis.Channel._connparams = _connparams_or_connection_error  # type: ignore[method-assign]
