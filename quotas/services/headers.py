"""OpenAI's rate-limit headers: the state they report, computed from the limiter's outcomes.

Header policy:

* all six ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` go on every authenticated
  answer, as OpenAI sends them; the values are those of the *tightest* scope (organization,
  project or key: the one with the fewest remaining, then the latest reset). A dimension with no
  configured limit reports :data:`UNLIMITED` as its limit and remaining and ``0s`` as its reset:
  a number every client parses, that never looks like "almost out" to one that throttles itself
  on ``remaining`` (Azure's ``-1`` does). The ``response.rate_limits.updated`` event reports the
  same values.
* ``POST /v1/responses`` reports the admission decision (after its own reservation, like
  OpenAI): admission returns it on the reservation, a refusal on the error, and the gateway
  writes it; every other endpoint a peek at the limiter (one Redis round trip, nothing written).
* Resets use Go's duration format (``12ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h0m0s``), which is
  what OpenAI sends and what clients parse with ``time.ParseDuration``.
* When the limiter is unavailable requests are admitted without rate limits (fail open), and
  the headers say so: both dimensions report :data:`UNLIMITED`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.db import db_async
from core.errors import retry_after_headers  # noqa: F401 - Retry-After's format, used by admission
from quotas.services.limiter import LimiterUnavailable, Outcome, get_limiter
from quotas.services.limits import EffectiveLimits, limits_cached, limits_for

if TYPE_CHECKING:
    from tenants.principal import ApiPrincipal

logger = logging.getLogger(__name__)

UNLIMITED = 2_147_483_647
"""What a dimension without a configured limit reports as its limit and remaining (2³¹−1)."""


@dataclass(frozen=True)
class LimitState:
    limit: int
    remaining: int
    reset_ms: int


@dataclass(frozen=True)
class HeaderState:
    requests: LimitState | None = None
    tokens: LimitState | None = None

    def rate_limits(self) -> list[dict]:
        """The ``response.rate_limits.updated`` event payload (the shape of the Realtime API's
        ``rate_limits.updated``); a dimension without a limit reports :data:`UNLIMITED`, like
        the headers."""
        out = []
        for name, state in (("requests", self.requests), ("tokens", self.tokens)):
            state = state or _UNLIMITED_STATE
            out.append(
                {
                    "name": name,
                    "limit": state.limit,
                    "remaining": state.remaining,
                    "reset_seconds": round(state.reset_ms / 1000, 3),
                }
            )
        return out


_UNLIMITED_STATE = LimitState(UNLIMITED, UNLIMITED, 0)


def header_state(outcomes: Iterable[Outcome]) -> HeaderState | None:
    """The tightest requests limit and the tightest tokens limit among ``outcomes``."""
    best: dict[str, Outcome] = {}
    for outcome in outcomes:
        kind = outcome.check.kind
        if kind == "concurrency":
            continue
        current = best.get(kind)
        if current is None or (outcome.remaining, -outcome.reset_ms) < (
            current.remaining,
            -current.reset_ms,
        ):
            best[kind] = outcome
    if not best:
        return None

    def state(kind: str) -> LimitState | None:
        outcome = best.get(kind)
        if outcome is None:
            return None
        return LimitState(outcome.check.limit, outcome.remaining, outcome.reset_ms)

    return HeaderState(requests=state("requests"), tokens=state("tokens"))


def go_duration(ms: int) -> str:
    """Milliseconds in Go's ``time.Duration`` string format, at millisecond precision."""
    ms = max(int(ms), 0)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}.{rest % 1000:03d}".rstrip("0").rstrip(".")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{seconds}s"


def rate_limit_headers(state: HeaderState | None) -> dict[str, str]:
    """All six headers; ``None`` (nothing limits this caller) reports both as unlimited."""
    state = state or HeaderState()
    headers: dict[str, str] = {}
    for name, value in (("requests", state.requests), ("tokens", state.tokens)):
        value = value or _UNLIMITED_STATE
        headers[f"x-ratelimit-limit-{name}"] = str(value.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(value.remaining)
        headers[f"x-ratelimit-reset-{name}"] = go_duration(value.reset_ms)
    return headers


def _cached_limits(principal: ApiPrincipal) -> EffectiveLimits | None:
    return limits_cached(
        organization_id=principal.organization.pk,
        project_id=principal.project.pk if principal.project else None,
        api_key_id=principal.api_key.pk,
    )


async def rate_limit_peek(*, principal: ApiPrincipal) -> HeaderState | None:
    """The caller's current state, for an answer no admission decided (None: nothing limits
    the caller, or the limiter is away). Never raises: headers are a courtesy, the answer itself
    must not fail over them."""
    try:
        limits = _cached_limits(principal) or await db_async(limits_for)(
            organization=principal.organization,
            project=principal.project,
            api_key=principal.api_key,
        )
        checks = limits.checks(tokens=0, admission=False)
        if checks:
            return header_state(await get_limiter().peek(checks))
    except LimiterUnavailable:
        pass  # admitted without limits (fail open): the headers report unlimited
    except Exception:
        logger.exception("rate-limit peek failed")
    return None


def rate_limit_peek_sync(*, principal: ApiPrincipal) -> HeaderState | None:
    """:func:`rate_limit_peek` for a sync request (WSGI)."""
    try:
        limits = _cached_limits(principal) or limits_for(
            organization=principal.organization,
            project=principal.project,
            api_key=principal.api_key,
        )
        checks = limits.checks(tokens=0, admission=False)
        if checks:
            return header_state(get_limiter().peek_sync(checks))
    except LimiterUnavailable:
        pass
    except Exception:
        logger.exception("rate-limit peek failed")
    return None
