"""Metrics measured in this process (prometheus-client's default registry), recorded by the
layers that see the events; ``GET /metrics`` (the HTTP edge) exposes them."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TIME_TO_FIRST_TOKEN = Histogram(
    "rp_time_to_first_token_seconds",
    "From the start of generation to the engine's first delta.",
    ["organization", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
LIMITER_DECISIONS = Counter(
    "rp_limiter_decisions_total",
    "Admission decisions of the rate limiter in this process.",
    ["organization", "decision"],
)


def record_first_token(*, organization: str, model: str, seconds: float) -> None:
    TIME_TO_FIRST_TOKEN.labels(organization=organization, model=model).observe(seconds)


def record_limiter_decision(*, organization: str, decision: str) -> None:
    """``allowed``, ``rate_limited``, ``quota_exceeded`` or ``fail_open``."""
    LIMITER_DECISIONS.labels(organization=organization, decision=decision).inc()
