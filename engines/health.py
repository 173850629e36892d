"""Engine health for operators: every enabled replica probed now (its ``/health`` and the
latency of that probe), next to what this web process's replica pool knows of it (healthy or
ejected, since when, the last error, requests in flight)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from engines.models import EngineReplica
from engines.runtime.pool import root_url
from engines.runtime.registry import replica_states


@dataclass
class ReplicaHealth:
    model: str
    base_url: str
    enabled: bool
    probe_ok: bool | None = None
    probe_ms: float | None = None
    probe_error: str | None = None
    pool_state: str = "not used by this process yet"
    since: datetime | None = None
    last_error: str | None = None
    in_flight: int | None = None
    requests_total: int | None = None
    failures_total: int | None = None

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.pool_state == "ejected" or self.probe_ok is False:
            return "ejected" if self.pool_state == "ejected" else "unhealthy"
        return "healthy"


def replica_rows(*, model_name: str | None = None) -> list[ReplicaHealth]:
    replicas = EngineReplica.objects.select_related("model").order_by("model__name", "base_url")
    if model_name is not None:
        replicas = replicas.filter(model__name=model_name)
    known = replica_states()
    rows = []
    for replica in replicas:
        row = ReplicaHealth(
            model=replica.model.name,
            base_url=replica.base_url.rstrip("/"),
            enabled=replica.enabled and replica.model.enabled,
        )
        for state in known.get(row.model, []):
            if state["base_url"] == row.base_url:
                row.pool_state = "healthy" if state["healthy"] else "ejected"
                row.since = datetime.fromtimestamp(state["since"], tz=UTC)
                row.last_error = state["last_error"]
                row.in_flight = state["in_flight"]
                row.requests_total = state["requests_total"]
                row.failures_total = state["failures_total"]
        rows.append(row)
    return rows


async def probe(rows: list[ReplicaHealth], *, probe_seconds: float = 2.0) -> list[ReplicaHealth]:
    async with httpx.AsyncClient(timeout=probe_seconds) as client:

        async def one(row: ReplicaHealth) -> None:
            if not row.enabled:
                return
            started = time.monotonic()
            try:
                answer = await client.get(f"{root_url(row.base_url)}/health")
                row.probe_ok = answer.status_code == 200
                if not row.probe_ok:
                    row.probe_error = f"/health answered {answer.status_code}"
            except httpx.HTTPError as exc:
                row.probe_ok = False
                row.probe_error = f"{type(exc).__name__}: {exc}"
            row.probe_ms = round((time.monotonic() - started) * 1000, 1)

        await asyncio.gather(*(one(row) for row in rows))
    return rows


def replica_health_sync(*, model_name: str | None = None) -> list[ReplicaHealth]:
    """For sync callers (the model's admin page): the same rows, probed."""
    return asyncio.run(probe(replica_rows(model_name=model_name)))
