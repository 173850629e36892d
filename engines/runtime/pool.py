"""The vLLM replicas behind one model: health, load and which one a request goes to.

Routing rules:

* a request with a ``prompt_cache_key`` goes to the replica with the highest rendezvous (HRW) score
  for (organization, key) among the *healthy* replicas, so the same conversation prefix keeps
  hitting the same vLLM prefix cache, and losing a replica only moves the keys that lived on it;
* any other request goes to the replica with the fewest requests in flight (ties round robin).

Health: every ``health_interval`` seconds each replica's ``GET {root}/health`` is probed. One
failed probe, or one connection failure seen by a real request, ejects the replica; the next
passing probe re-admits it. The checker is an asyncio task started lazily in the running loop
(daphne's, or a test's), never a thread, and :meth:`ReplicaPool.aclose` stops it.

Everything here is loop-local: a pool belongs to the event loop it is first used in (its httpx
connections do too). The registry keeps one pool per model per loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from engines.runtime.event_stream import StreamConnections
from engines.runtime.network import engine_transport
from engines.runtime.types import EngineUnavailable

logger = logging.getLogger(__name__)

ENGINE_KEEPALIVE_SECONDS = 4.0
# What reusing a connection the other side closed while it sat in the pool raises.
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)

__all__ = ["Replica", "ReplicaPool", "ReplicaSpec", "hrw_score", "root_url"]


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    base_url: str
    """The OpenAI-compatible base URL of a vLLM server, ending in ``/v1``."""
    api_key: str = ""


def root_url(base_url: str) -> str:
    """``http://host:port/v1`` → ``http://host:port`` (where vLLM serves /health, /tokenize)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def hrw_score(*, organization_id: str, prompt_cache_key: str, replica_id: str) -> int:
    """Rendezvous score. A real hash, not ``hash()``: every process must pick the same replica."""
    material = "\x1f".join((organization_id, prompt_cache_key, replica_id)).encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big")


@dataclass(eq=False)
class Replica:
    base_url: str
    api_key: str = ""
    healthy: bool = True
    """Optimistic at start: the first request should not wait for a probe. A dead replica is
    ejected by its first probe or its first refused connection, and the request is retried."""
    in_flight: int = 0
    requests_total: int = 0
    failures_total: int = 0
    last_error: str | None = None
    last_checked_at: float | None = None
    changed_at: float = field(default_factory=time.monotonic)
    http: httpx.AsyncClient | None = field(default=None, repr=False)
    streams: StreamConnections | None = field(default=None, repr=False)

    @property
    def root_url(self) -> str:
        return root_url(self.base_url)

    def snapshot(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "healthy": self.healthy,
            "in_flight": self.in_flight,
            "requests_total": self.requests_total,
            "failures_total": self.failures_total,
            "last_error": self.last_error,
        }


class ReplicaPool:
    def __init__(
        self,
        replicas: Sequence[ReplicaSpec | str],
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        health_interval: float = 5.0,
        health_timeout: float = 2.0,
        max_connections: int = 1024,
        name: str = "",
    ) -> None:
        specs = [ReplicaSpec(base_url=r) if isinstance(r, str) else r for r in replicas]
        seen: set[str] = set()
        self._replicas: list[Replica] = []
        for spec in specs:
            url = spec.base_url.rstrip("/")
            if url in seen:
                continue
            seen.add(url)
            self._replicas.append(Replica(base_url=url, api_key=spec.api_key))
        self.name = name
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.max_connections = max_connections
        self._round_robin = 0
        self._health_task: asyncio.Task[None] | None = None
        self._closed = False

    # --- introspection ---------------------------------------------------------------------
    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas)

    @property
    def healthy_replicas(self) -> list[Replica]:
        return [r for r in self._replicas if r.healthy]

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, base_url: str) -> Replica:
        url = base_url.rstrip("/")
        for replica in self._replicas:
            if replica.base_url == url:
                return replica
        raise KeyError(base_url)

    def snapshot(self) -> list[dict[str, Any]]:
        return [r.snapshot() for r in self._replicas]

    # --- connections ------------------------------------------------------------------------
    def http_client(self, replica: Replica) -> httpx.AsyncClient:
        """The replica's pooled connections, shared by generation, tokenize and health probes."""
        if replica.http is None or replica.http.is_closed:
            headers = {"Authorization": f"Bearer {replica.api_key}"} if replica.api_key else {}
            replica.http = httpx.AsyncClient(
                # Reading a stream may legitimately pause for long (queueing, long prefill), but
                # a replica that does not accept a connection quickly is treated as down.
                timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
                # Plain asyncio sockets under httpx's pool (engines.runtime.network).
                transport=engine_transport(
                    limits=httpx.Limits(
                        max_connections=self.max_connections,
                        max_keepalive_connections=min(self.max_connections, 128),
                        # Below vLLM's own idle timeout (its uvicorn closes a keep-alive
                        # connection after 5 s): a connection the engine may already have closed
                        # is not reused.
                        keepalive_expiry=ENGINE_KEEPALIVE_SECONDS,
                    )
                ),
                headers=headers,
                # Replicas are internal addresses: proxy variables meant for the outside world
                # must not reroute engine traffic.
                trust_env=False,
            )
        return replica.http

    def stream_connections(self, replica: Replica) -> StreamConnections:
        """The replica's pooled connections for streaming generation (the per-token path has
        a client of its own: :mod:`engines.runtime.event_stream`)."""
        if replica.streams is None:
            replica.streams = StreamConnections(
                replica.base_url,
                connect_timeout=self.connect_timeout,
                max_connections=self.max_connections,
                max_idle=min(self.max_connections, 128),
            )
        return replica.streams

    # --- selection ------------------------------------------------------------------------
    def select(
        self,
        *,
        organization_id: str,
        prompt_cache_key: str | None = None,
        exclude: Collection[Replica] = (),
    ) -> Replica:
        """The replica for one attempt of a request. Raises EngineUnavailable if none is healthy."""
        self.ensure_started()
        untried = [r for r in self._replicas if r not in exclude]
        candidates = [r for r in untried if r.healthy]
        if not candidates and untried:
            # Every replica is ejected: try them anyway ("panic mode", as Envoy does at 0 %
            # healthy). An ejection can be a false alarm (a /health probe that timed out while
            # the engine was saturated); refusing everything would turn it into an outage,
            # while a replica that is really down still fails this request, and only it.
            logger.warning("no healthy replica for %s; trying ejected ones", self.name)
            candidates = untried
        if not candidates:
            total = len(self._replicas)
            healthy = len(self.healthy_replicas)
            raise EngineUnavailable(
                f"No healthy engine replica for model {self.name!r} "
                f"({healthy} of {total} healthy, {len(exclude)} already tried)."
            )
        if prompt_cache_key:
            return max(
                candidates,
                key=lambda r: hrw_score(
                    organization_id=organization_id,
                    prompt_cache_key=prompt_cache_key,
                    replica_id=r.base_url,
                ),
            )
        least = min(r.in_flight for r in candidates)
        tied = [r for r in candidates if r.in_flight == least]
        choice = tied[self._round_robin % len(tied)]
        self._round_robin += 1
        return choice

    @contextlib.contextmanager
    def lease(self, replica: Replica) -> Iterator[Replica]:
        """Count a request as in flight on ``replica`` for the duration of the block."""
        replica.in_flight += 1
        replica.requests_total += 1
        try:
            yield replica
        finally:
            replica.in_flight -= 1

    # --- health -----------------------------------------------------------------------------
    def next_check_in_ms(self) -> int:
        """Milliseconds until the next health probe round, when an ejected replica can be
        re-admitted at the earliest: what a 503's ``retry-after`` reports."""
        checked = [r.last_checked_at for r in self._replicas if r.last_checked_at is not None]
        if not checked:
            return int(self.health_interval * 1000)
        due = max(checked) + self.health_interval + self.health_timeout
        return max(int((due - time.monotonic()) * 1000), 1)

    def mark_failed(self, replica: Replica, *, reason: str) -> None:
        """Eject ``replica`` until a health probe passes again."""
        replica.failures_total += 1
        replica.last_error = reason
        if replica.healthy:
            replica.healthy = False
            replica.changed_at = time.monotonic()
            logger.warning(
                "engine replica ejected: model=%s replica=%s reason=%s",
                self.name,
                replica.base_url,
                reason,
            )

    def mark_healthy(self, replica: Replica) -> None:
        replica.last_error = None
        if not replica.healthy:
            replica.healthy = True
            replica.changed_at = time.monotonic()
            logger.info(
                "engine replica re-admitted: model=%s replica=%s", self.name, replica.base_url
            )

    async def check_replica(self, replica: Replica) -> bool:
        """Probe one replica now and update its state."""
        replica.last_checked_at = time.monotonic()
        url = f"{replica.root_url}/health"
        try:
            try:
                response = await self.http_client(replica).get(url, timeout=self.health_timeout)
            except _STALE_CONNECTION:
                # A pooled connection the engine closed between two probes fails at once; that
                # says nothing of the engine. Once more, on a fresh connection.
                response = await self.http_client(replica).get(url, timeout=self.health_timeout)
        except (httpx.HTTPError, OSError) as exc:
            self.mark_failed(replica, reason=f"health probe failed: {type(exc).__name__}: {exc}")
            return False
        if response.status_code != 200:
            self.mark_failed(replica, reason=f"health probe answered {response.status_code}")
            return False
        self.mark_healthy(replica)
        return True

    async def check_health(self) -> None:
        """Probe every replica concurrently (one slow replica must not delay the others)."""
        await asyncio.gather(*(self.check_replica(r) for r in self._replicas))

    def ensure_started(self) -> None:
        """Start the health checker in the running loop, once. Sync so select() can call it."""
        if self._closed:
            raise EngineUnavailable(f"The engine pool for model {self.name!r} is closed.")
        if self._health_task is not None and not self._health_task.done():
            return
        loop = asyncio.get_running_loop()
        self._health_task = loop.create_task(
            self._health_loop(),
            name=f"engine-health:{self.name or id(self)}",
            # Its own context: started during a request, it must not log under that request's id.
            context=contextvars.Context(),
        )

    async def _health_loop(self) -> None:
        while True:
            try:
                await self.check_health()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one probe round must not stop health checking
                logger.exception("engine health check round failed: model=%s", self.name)
            await asyncio.sleep(self.health_interval)

    # --- shutdown ---------------------------------------------------------------------------
    async def wait_idle(self, *, within: float, poll: float = 0.5) -> bool:
        """Wait up to ``within`` seconds for no request to be in flight; True if idle."""
        for _ in range(max(int(within / poll), 0) + 1):
            if not any(r.in_flight for r in self._replicas):
                return True
            await asyncio.sleep(poll)
        return not any(r.in_flight for r in self._replicas)

    async def aclose(self) -> None:
        """Stop health checks and close every connection. Idempotent."""
        self._closed = True
        task, self._health_task = self._health_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in self._replicas:
            streams, replica.streams = replica.streams, None
            if streams is not None:
                streams.close()
            client, replica.http = replica.http, None
            if client is not None:
                await client.aclose()
