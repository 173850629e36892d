"""Which engine serves a model: built from the database, cached per process and event loop.

``await get_engine("model-name")`` is the one call the Responses layer makes. It returns the
:class:`VllmEngine` (with its :class:`ReplicaPool`) built from the ``ServedModel`` and its enabled
``EngineReplica`` rows, or an override registered by tests. Unknown or disabled models raise
``LookupError`` (the API layer answers ``model_not_found``).

Why per event loop: an engine owns httpx connections and a health-check task, and both belong to
the loop they were created in. Daphne runs one loop for the process, so in production there is one
engine per model; tests run many loops and each gets its own. Entries are re-read from the
database every ``ENGINE_REGISTRY_REFRESH_SECONDS`` (default 30): when an admin changes a model's
replicas the new engine takes over and the old one is closed once its streams have finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from core.db import db_async
from engines.runtime.pool import ReplicaPool, ReplicaSpec
from engines.runtime.types import Engine
from engines.runtime.vllm import VllmEngine, cache_salt_factory
from engines.services.tiers import ServiceTierError, resolve_service_tier

logger = logging.getLogger(__name__)

__all__ = [
    "EngineConfig",
    "ServiceTierError",
    "aclose_engines",
    "build_engine",
    "build_engine_for_model",
    "clear_engine_overrides",
    "engine_override",
    "get_engine",
    "load_engine_config",
    "register_engine_override",
    "resolve_service_tier",
]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What an engine is built from: a plain snapshot of a ServedModel and its replicas."""

    name: str
    upstream_model: str
    replicas: tuple[ReplicaSpec, ...]


@dataclass(slots=True)
class _Entry:
    config: EngineConfig
    engine: VllmEngine
    checked_at: float


_lock = threading.Lock()
_overrides: dict[str, Engine] = {}
_engines: dict[asyncio.AbstractEventLoop, dict[str, _Entry]] = {}
_build_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
_retiring: set[asyncio.Task[None]] = set()


# --- test hooks ----------------------------------------------------------------------------------
def register_engine_override(model_name: str, engine: Engine) -> None:
    """Serve ``model_name`` with ``engine`` (in every loop) until overrides are cleared."""
    with _lock:
        _overrides[model_name] = engine


def clear_engine_overrides() -> None:
    with _lock:
        _overrides.clear()


@contextlib.contextmanager
def engine_override(model_name: str, engine: Engine) -> Iterator[Engine]:
    """``with engine_override("m", ScriptedEngine(...)) as engine:`` — restored on exit."""
    with _lock:
        previous = _overrides.get(model_name)
        _overrides[model_name] = engine
    try:
        yield engine
    finally:
        with _lock:
            if previous is None:
                _overrides.pop(model_name, None)
            else:
                _overrides[model_name] = previous


# --- building ------------------------------------------------------------------------------------
def _setting(name: str, default: float) -> float:
    from django.conf import settings

    return float(getattr(settings, name, default))


def load_engine_config(model_name: str) -> EngineConfig:
    """Read a model and its enabled replicas (sync ORM). LookupError if unknown or disabled."""
    from engines.models import ServedModel

    model = ServedModel.objects.filter(name=model_name, enabled=True).first()
    if model is None:
        raise LookupError(f"The model {model_name!r} does not exist.")
    replicas = tuple(
        ReplicaSpec(base_url=r.base_url, api_key=r.api_key)
        for r in model.replicas.filter(enabled=True).order_by("base_url")
    )
    return EngineConfig(name=model.name, upstream_model=model.upstream_model, replicas=replicas)


def build_engine(config: EngineConfig, *, secret: str | None = None) -> VllmEngine:
    """A VllmEngine for ``config`` with timeouts from settings. No I/O: safe to call anywhere;
    the engine binds to the event loop it is first used in."""
    if secret is None:
        from django.conf import settings

        secret = getattr(settings, "ENGINE_CACHE_SALT_SECRET", None) or settings.SECRET_KEY
    pool = ReplicaPool(
        config.replicas,
        connect_timeout=_setting("ENGINE_CONNECT_TIMEOUT_SECONDS", 5.0),
        read_timeout=_setting("ENGINE_READ_TIMEOUT_SECONDS", 600.0),
        health_interval=_setting("ENGINE_HEALTH_INTERVAL_SECONDS", 5.0),
        name=config.name,
    )
    return VllmEngine(
        upstream_model=config.upstream_model, pool=pool, cache_salt=cache_salt_factory(secret)
    )


def build_engine_for_model(model_name: str) -> Engine:
    """Sync and uncached: the override, or a fresh engine from the database. For sync callers
    (Celery tasks, management commands) that then drive it with ``asyncio.run``; they should
    ``await engine.aclose()`` when done."""
    with _lock:
        override = _overrides.get(model_name)
    if override is not None:
        return override
    return build_engine(load_engine_config(model_name))


# --- the per-loop cache --------------------------------------------------------------------------
def _loop_state(loop: asyncio.AbstractEventLoop) -> tuple[dict[str, _Entry], asyncio.Lock]:
    with _lock:
        for stale in [known for known in _engines if known.is_closed()]:
            # Their connections died with their loop; nothing can be awaited there any more.
            _engines.pop(stale, None)
            _build_locks.pop(stale, None)
        engines = _engines.setdefault(loop, {})
        build_lock = _build_locks.get(loop)
        if build_lock is None:
            build_lock = _build_locks[loop] = asyncio.Lock()
        return engines, build_lock


async def get_engine(model_name: str) -> Engine:
    """The engine for ``model_name`` in the running loop. LookupError for unknown models."""
    with _lock:
        override = _overrides.get(model_name)
    if override is not None:
        return override
    loop = asyncio.get_running_loop()
    engines, build_lock = _loop_state(loop)
    refresh = _setting("ENGINE_REGISTRY_REFRESH_SECONDS", 30.0)
    entry = engines.get(model_name)
    if entry is not None and time.monotonic() - entry.checked_at < refresh:
        return entry.engine
    async with build_lock:
        entry = engines.get(model_name)
        if entry is not None and time.monotonic() - entry.checked_at < refresh:
            return entry.engine
        try:
            config = await db_async(load_engine_config)(model_name)
        except LookupError:
            if entry is not None:
                del engines[model_name]
                _retire(entry.engine)
            raise
        if entry is not None and entry.config == config:
            entry.checked_at = time.monotonic()
            return entry.engine
        engine = build_engine(config)
        engines[model_name] = _Entry(config=config, engine=engine, checked_at=time.monotonic())
        if entry is not None:
            logger.info("engine configuration changed, replacing it: model=%s", model_name)
            _retire(entry.engine)
        return engine


def _retire(engine: VllmEngine) -> None:
    """Close a replaced engine once the streams still using it have ended."""

    async def retire() -> None:
        await engine.pool.wait_idle(within=engine.pool.read_timeout)
        await engine.aclose()

    task = asyncio.get_running_loop().create_task(retire())
    _retiring.add(task)
    task.add_done_callback(_retiring.discard)


async def aclose_engines() -> None:
    """Close every engine of the running loop (shutdown, test teardown). Overrides are kept."""
    loop = asyncio.get_running_loop()
    with _lock:
        engines = _engines.pop(loop, {})
        _build_locks.pop(loop, None)
    for entry in engines.values():
        await entry.engine.aclose()


def replica_states() -> dict[str, list[dict]]:
    """What this process knows of each replica it has used (health pages and metrics): per
    model, each replica's state as its pool sees it. Other processes keep their own view."""
    now_wall, now_mono = time.time(), time.monotonic()
    with _lock:
        entries = [
            (name, entry.engine)
            for loop, engines in _engines.items()
            if not loop.is_closed()
            for name, entry in engines.items()
        ]
    states: dict[str, list[dict]] = {}
    for name, engine in entries:
        for replica in engine.pool.replicas:
            states.setdefault(name, []).append(
                {
                    "base_url": replica.base_url,
                    "healthy": replica.healthy,
                    "since": now_wall - (now_mono - replica.changed_at),
                    "last_error": replica.last_error,
                    "in_flight": replica.in_flight,
                    "requests_total": replica.requests_total,
                    "failures_total": replica.failures_total,
                }
            )
    return states
