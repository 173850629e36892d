"""Shared versions: how a per-process cache learns, on its very next use, that what it holds
was changed by any process.

A version is a random token under a name (``"tenants"``, ``"engines"``). Whoever changes data
that some process may hold in a cache calls :func:`version_bump`; a cache stores, with each
entry, the token it read *before* loading the entry, and uses the entry only while the current
token is still that one. The order makes it exact:

* a writer bumps after its change is visible (right away, and again when the enclosing
  transaction commits: in between, a reader could load the old row under the new token);
* a reader that read the old token before the bump may have loaded either version of the row,
  but the bump makes that token stale, so its next request loads the row again.

So a change is seen by every process from the first request that starts after the write
returned. The tokens live in Redis when the default cache is Redis (one GET, or one MGET for
several names, per request), otherwise in small files in the data directory that every process
of the embedded default shares (a read of a few bytes). Tokens are random, never counters: a
Redis that lost its data, or a file deleted by hand, can never bring back a token a cache still
holds. When the store cannot be read the version is ``None`` and callers go to the database.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import models, transaction

from core.cache import default_cache_is_redis, loop_redis, redis_key

logger = logging.getLogger(__name__)

_KEY_PREFIX = "shared-version:"

# The versions one request read at its start (api.middleware), for the sync code it runs in
# database threads (contextvars follow sync_to_async): one round trip validates every cache
# the request uses. Never set outside a request.
request_versions: contextvars.ContextVar[dict[str, int | None] | None] = contextvars.ContextVar(
    "request_versions", default=None
)


def _new_token() -> int:
    # An integer: Django's Redis serializer stores it as plain digits, which the async client
    # reads back without unpickling.
    return secrets.randbits(62) + 1


def _file(name: str) -> Path:
    return Path(settings.DATA_DIR) / "versions" / name


# --- reading ---------------------------------------------------------------------------------


def version_get(name: str) -> int | None:
    """The current token of ``name`` (created if there is none yet), or None if the store
    cannot be read. A version read at the start of the current request is used as it is."""
    known = request_versions.get()
    if known is not None and name in known:
        return known[name]
    if default_cache_is_redis():
        cache = caches["default"]
        key = _KEY_PREFIX + name
        try:
            token = cache.get(key)
            if token is None:
                cache.add(key, _new_token(), timeout=None)
                token = cache.get(key)
            return token
        except Exception:  # noqa: BLE001 - Redis away: the caller reads the database instead
            logger.warning("cache unavailable; version %s not read", name)
            return None
    return _file_read(name)


async def versions_get(*names: str) -> dict[str, int | None]:
    """The current tokens of ``names`` in one round trip, from the event loop (no thread)."""
    if not default_cache_is_redis():
        return {name: _file_read(name) for name in names}
    client = loop_redis()
    keys = [redis_key(_KEY_PREFIX + name) for name in names]
    try:
        values = await client.mget(keys)
        for index, value in enumerate(values):
            if value is None:  # first use, or Redis lost its data: start a new token
                await client.set(keys[index], _new_token(), nx=True)
                values[index] = await client.get(keys[index])
        return {name: int(value) for name, value in zip(names, values, strict=True)}
    except Exception:  # noqa: BLE001 - Redis away: the caller reads the database instead
        logger.warning("cache unavailable; versions %s not read", ", ".join(names))
        return dict.fromkeys(names)


async def version_get_async(name: str) -> int | None:
    """:func:`version_get` from the event loop."""
    known = request_versions.get()
    if known is not None and name in known:
        return known[name]
    return (await versions_get(name))[name]


def _file_read(name: str) -> int | None:
    path = _file(name)
    try:
        return int(path.read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        logger.warning("version file %s unreadable", path)
        return None
    try:
        _file_write(name, exclusive=True)
    except FileExistsError:
        pass  # another process created it first
    except OSError:
        logger.warning("version file %s cannot be created", path)
        return None
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _file_write(name: str, *, exclusive: bool = False) -> None:
    # Written aside and then moved (or linked) into place: a reader sees the old file or the
    # new one, never a half-written one.
    path = _file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(str(_new_token()))
        if exclusive:
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


# --- writing ---------------------------------------------------------------------------------


def version_bump(name: str) -> None:
    """Make every cached entry under ``name`` stale: now, and once more when the current
    transaction commits (a reader in between may have loaded the uncommitted-over row)."""
    _bump(name)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _bump(name), robust=True)


def _bump(name: str) -> None:
    # The current request's snapshot (if any) must not hide this process's own change.
    known = request_versions.get()
    if known is not None:
        known.pop(name, None)
    try:
        if default_cache_is_redis():
            caches["default"].set(_KEY_PREFIX + name, _new_token(), timeout=None)
        else:
            _file_write(name)
    except Exception:
        logger.error(
            "version %s not bumped (store unreachable): other processes may use their cached "
            "copy for up to VERSIONED_CACHE_SECONDS",
            name,
            exc_info=True,
        )


# --- rows whose every change bumps a version -------------------------------------------------


class VersionedQuerySet(models.QuerySet):
    """Bulk writes (``update``, ``delete``; ``bulk_update`` goes through ``update``) bump
    ``version_name``, unless they only touch ``unversioned_fields`` (bookkeeping no cached
    decision reads, like a key's ``last_used_at``)."""

    version_name = ""
    unversioned_fields: frozenset[str] = frozenset()

    def update(self, **kwargs):
        rows = super().update(**kwargs)
        if not set(kwargs) <= self.unversioned_fields:
            version_bump(self.version_name)
        return rows

    update.alters_data = True  # type: ignore[attr-defined]  # Django's flag on QuerySet methods

    def delete(self):
        result = super().delete()
        version_bump(self.version_name)
        return result

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class VersionedRow:
    """For a model whose rows processes cache under ``version_name``: ``save`` (but an insert,
    which no cache can hold yet) and ``delete`` bump it. With :class:`VersionedQuerySet` as the
    manager's queryset, every ORM write path bumps; raw SQL would have to bump by itself."""

    version_name = ""
    unversioned_fields: frozenset[str] = frozenset()

    def save(self, *args, **kwargs):
        # A mixin for models: _state, pk and the Model methods come with the model class.
        inserting = self._state.adding and self.pk is None  # type: ignore[attr-defined]
        super().save(*args, **kwargs)  # type: ignore[misc]
        update_fields = kwargs.get("update_fields")
        if inserting or (
            update_fields is not None and set(update_fields) <= self.unversioned_fields
        ):
            return
        version_bump(self.version_name)

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)  # type: ignore[misc]
        version_bump(self.version_name)
        return result


# --- what a process caches under a version ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    loaded_at: float
    value: Any


class VersionedCache:
    """A per-process map whose entries are valid only under the version token they were stored
    with (read *before* loading them) and for at most ``VERSIONED_CACHE_SECONDS``."""

    def __init__(self, *, limit: int = 10_000) -> None:
        self._entries: dict[Any, _Entry] = {}
        self._limit = limit

    def get(self, key: Any, *, version: int | None) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or version is None or entry.version != version:
            return None
        if time.monotonic() - entry.loaded_at > settings.VERSIONED_CACHE_SECONDS:
            return None
        return entry.value

    def put(self, key: Any, value: Any, *, version: int | None) -> None:
        if version is None or settings.VERSIONED_CACHE_SECONDS <= 0:
            return
        if key not in self._entries and len(self._entries) >= self._limit:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[key] = _Entry(version=version, loaded_at=time.monotonic(), value=value)

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class RowSnapshot:
    """A model instance's row, to hand out again as fresh instances."""

    model: type[models.Model]
    database: str
    values: tuple[Any, ...]

    @classmethod
    def of(cls, instance: models.Model) -> RowSnapshot:
        return cls(
            model=type(instance),
            database=instance._state.db or "default",  # noqa: SLF001 (Django's documented row state)
            values=tuple(getattr(instance, f.attname) for f in instance._meta.concrete_fields),
        )

    def instance(self) -> Any:
        # An instance of the caller's own, JSON values copied: whatever one request does to it
        # reaches no other request.
        return self.model.from_db(
            self.database,
            None,  # type: ignore[arg-type]  # None: every concrete field, in order (Django's own use)
            [copy.deepcopy(v) if isinstance(v, dict | list) else v for v in self.values],
        )
