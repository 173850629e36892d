"""Liveness and readiness probes.

``/healthz`` answers as long as the process can serve a request. ``/readyz`` checks what a request
needs: the database, Redis when it is configured, and at least one healthy engine replica per
enabled model when models are configured. Each check is timed; any failure makes it a 503 so a
load balancer stops sending traffic to this process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

CheckResult = dict[str, Any]


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_redis() -> None:
    import redis

    assert settings.REDIS_URL  # checked only when Redis is configured
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _enabled_replicas() -> dict[str, list[str]]:
    from engines.models import EngineReplica

    replicas: dict[str, list[str]] = {}
    for replica in EngineReplica.objects.filter(enabled=True, model__enabled=True).select_related(
        "model"
    ):
        replicas.setdefault(replica.model.name, []).append(replica.base_url)
    return replicas


async def _check_engines() -> CheckResult:
    replicas = await sync_to_async(_enabled_replicas)()
    if not replicas:
        return {"ok": True, "detail": "no engines configured"}
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def healthy(base_url: str) -> bool:
            root = base_url.rstrip("/").removesuffix("/v1")
            try:
                return (await client.get(f"{root}/health")).status_code == 200
            except httpx.HTTPError:
                return False

        models: dict[str, Any] = {}
        for name, urls in replicas.items():
            states = await asyncio.gather(*(healthy(url) for url in urls))
            models[name] = {"healthy_replicas": sum(states), "replicas": len(urls)}
    return {"ok": all(m["healthy_replicas"] > 0 for m in models.values()), "models": models}


async def _timed(check: Callable[[], Awaitable[CheckResult | None]]) -> CheckResult:
    started = time.monotonic()
    try:
        result = await check() or {"ok": True}
    except Exception as exc:  # noqa: BLE001 - a probe reports failures, it does not raise them
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


async def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def readyz(request) -> JsonResponse:
    checks: dict[str, Callable[[], Awaitable[CheckResult | None]]] = {
        "database": sync_to_async(_check_database),
        "engines": _check_engines,
    }
    if settings.REDIS_URL:
        checks["redis"] = sync_to_async(_check_redis)
    names = list(checks)
    results = await asyncio.gather(*(_timed(checks[name]) for name in names))
    report = dict(zip(names, results, strict=True))
    ready = all(result["ok"] for result in results)
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": report},
        status=200 if ready else 503,
    )
