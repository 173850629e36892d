"""Sign-in throttling: after ``LOGIN_FAILURES_ALLOWED`` wrong passwords for one user name, or
``ADDRESS_FAILURES_ALLOWED`` from one address (higher: many people may share a proxy's
address), further attempts are refused for ``LOGIN_LOCKOUT_SECONDS`` (counted in the cache, so
across web processes with Redis)."""

from __future__ import annotations

import hashlib
import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)

LOGIN_FAILURES_ALLOWED = 5
ADDRESS_FAILURES_ALLOWED = 50
LOGIN_LOCKOUT_SECONDS = 15 * 60


def _keys(username: str, address: str) -> list[str]:
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [f"console-login:user:{name}", f"console-login:addr:{address}"]


def login_locked(*, username: str, address: str) -> bool:
    try:
        counts = cache.get_many(_keys(username, address))
    except Exception:  # noqa: BLE001 - a cache outage must not lock everyone out
        logger.warning("cache unavailable; sign-in throttling skipped")
        return False
    user_key, address_key = _keys(username, address)
    return (
        counts.get(user_key, 0) >= LOGIN_FAILURES_ALLOWED
        or counts.get(address_key, 0) >= ADDRESS_FAILURES_ALLOWED
    )


def login_failed(*, username: str, address: str) -> None:
    for key in _keys(username, address):
        try:
            if cache.add(key, 1, timeout=LOGIN_LOCKOUT_SECONDS):
                continue
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout=LOGIN_LOCKOUT_SECONDS)
        except Exception:  # noqa: BLE001
            logger.warning("cache unavailable; sign-in failure not counted")
            return


def login_succeeded(*, username: str, address: str) -> None:
    try:
        cache.delete(_keys(username, address)[0])
    except Exception:  # noqa: BLE001
        logger.warning("cache unavailable; sign-in counter not reset")
