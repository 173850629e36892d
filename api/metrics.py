"""Prometheus metrics for the operator's own monitoring, at ``GET /metrics``.

Two kinds of numbers:

* measured in this process (prometheus-client's registry): time to first token per
  organization and model, limiter decisions, and this process's view of each engine replica;
* read from the database at scrape time, so they are the same whichever process answers and
  include background workers: responses, failures and tokens per organization and model (the
  daily rollup, summed), 429s, and the queue (background responses queued or running).

Protected: a bearer token (``METRICS_TOKEN``) for Prometheus, or a staff session in a browser;
anyone else gets a 404 (the endpoint's existence is not advertised).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Count, Sum
from django.http import Http404, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from core.db import db_async


class _Snapshot:
    """Metrics gathered for one scrape, handed to prometheus-client as a collector."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        yield from self.families


def _database_families() -> list:
    from quotas.models import UsageDaily
    from responses.models import StoredResponse

    rows = (
        UsageDaily.objects.values("organization__public_id", "model")
        .annotate(
            requests=Sum("requests"),
            failed=Sum("failed_requests"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            rate_limited=Sum("rate_limited"),
            quota_exceeded=Sum("quota_exceeded"),
            cost=Sum("cost"),
        )
        .order_by()
    )
    responses = CounterMetricFamily(
        "rp_responses", "Settled response turns.", labels=["organization", "model"]
    )
    failures = CounterMetricFamily(
        "rp_responses_failed", "Response turns that failed.", labels=["organization", "model"]
    )
    tokens = CounterMetricFamily(
        "rp_tokens", "Tokens of settled turns.", labels=["organization", "model", "kind"]
    )
    refused = CounterMetricFamily(
        "rp_refused_requests",
        "Requests refused with 429.",
        labels=["organization", "model", "reason"],
    )
    cost = CounterMetricFamily(
        "rp_cost_usd",
        "Cost of settled turns at the model prices.",
        labels=["organization", "model"],
    )
    for row in rows:
        labels = [row["organization__public_id"], row["model"]]
        responses.add_metric(labels, row["requests"] or 0)
        failures.add_metric(labels, row["failed"] or 0)
        tokens.add_metric([*labels, "input"], row["input_tokens"] or 0)
        tokens.add_metric([*labels, "output"], row["output_tokens"] or 0)
        refused.add_metric([*labels, "rate_limit_exceeded"], row["rate_limited"] or 0)
        refused.add_metric([*labels, "insufficient_quota"], row["quota_exceeded"] or 0)
        cost.add_metric(labels, float(row["cost"] or 0))
    queue = GaugeMetricFamily(
        "rp_responses_open",
        "Responses queued or in progress, by mode.",
        labels=["status", "mode"],
    )
    open_rows = (
        StoredResponse.objects.filter(status__in=("queued", "in_progress"))
        .values("status", "background")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {(r["status"], r["background"]): r["n"] for r in open_rows}
    for status in ("queued", "in_progress"):
        for background in (True, False):
            queue.add_metric(
                [status, "background" if background else "foreground"],
                counts.get((status, background), 0),
            )
    return [responses, failures, tokens, refused, cost, queue]


def _replica_families() -> list:
    from engines.runtime.registry import replica_states

    healthy = GaugeMetricFamily(
        "rp_engine_replica_healthy",
        "1 if this process routes to the replica, 0 if ejected.",
        labels=["model", "replica"],
    )
    in_flight = GaugeMetricFamily(
        "rp_engine_replica_in_flight",
        "Requests in flight from this process.",
        labels=["model", "replica"],
    )
    failures = CounterMetricFamily(
        "rp_engine_replica_failures",
        "Failures seen by this process.",
        labels=["model", "replica"],
    )
    for model, replicas in replica_states().items():
        for replica in replicas:
            labels = [model, replica["base_url"]]
            healthy.add_metric(labels, 1 if replica["healthy"] else 0)
            in_flight.add_metric(labels, replica["in_flight"])
            failures.add_metric(labels, replica["failures_total"])
    return [healthy, in_flight, failures]


def _allowed(request) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip(), token)
    return False


async def metrics(request) -> HttpResponse:
    if not _allowed(request):
        user = await request.auser()
        if not (user.is_authenticated and user.is_staff):
            raise Http404()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Snapshot(await db_async(_database_families)() + _replica_families()))
    from prometheus_client import REGISTRY

    body = generate_latest(REGISTRY) + generate_latest(scrape)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
