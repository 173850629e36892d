"""Admission and settlement: the two moments a response meets its quotas.

``response_prepare`` calls :func:`quota_admit` once the prompt is final and before anything is
stored. It reserves, atomically and all-or-nothing, one request, the token estimate (input upper
bound + ``max_output_tokens`` or the model's default) and one in-flight slot against every
limit of the organization, project and key (the limiter), then the hard monthly budgets and the
ledger row (the database). A refusal is a 429 shaped like OpenAI's:

* ``rate_limit_exceeded`` with ``type`` ``requests`` or ``tokens``, ``retry-after`` (whole
  seconds ≥ 1) and ``retry-after-ms`` from the limiter's state; a request larger than a token
  limit can never pass and says so with ``x-should-retry: false``;
* ``insufficient_quota`` (a hard budget) with ``x-should-retry: false`` and the time until the
  budget's month ends (past the SDK's 120 s ceiling, so it never retries either way).

Admission returns a :class:`Reservation` that also carries the limiter's state after it (what
the answer's ``x-ratelimit-*`` headers report; a refusal carries it on the error). The caller
settles the reservation exactly once, whatever the ending, with plain values (the final status
and the token usage): the limiter gets back what was not used (or is charged an overrun) and
frees the slot, and the ledger row gets the real usage.

**Limiter outage policy: fail open.** If the limiter's Redis cannot be reached (or answers
slowly: ``QUOTA_REDIS_TIMEOUT_SECONDS``), requests are admitted without rate limits and without
rate-limit headers, and an error is logged once per ``QUOTA_REDIS_RETRY_SECONDS``. It never
becomes a 500, and budgets and the ledger (PostgreSQL) still apply. Rationale: the limiter
protects capacity; refusing all traffic because its bookkeeping is down would turn a Redis
incident into a full outage. After a Redis restart the counters start empty (a fresh window).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from core.db import db_async
from core.errors import ApiError
from core.metrics import record_limiter_decision
from quotas.services import headers as rl_headers
from quotas.services.headers import HeaderState, header_state
from quotas.services.ledger import (
    BudgetExhausted,
    BudgetHold,
    TokenUsage,
    cost_budget_exceeded,
    next_month_start,
    usage_record_open,
    usage_record_settle,
    usage_refusal_count,
)
from quotas.services.limiter import NEVER, Check, Decision, LimiterUnavailable, get_limiter
from quotas.services.limits import EffectiveLimits, limits_cached, limits_for

if TYPE_CHECKING:
    from tenants.principal import ApiPrincipal

logger = logging.getLogger(__name__)

# Chat templates add a handful of tokens per message; a byte-level BPE token covers at least one
# byte. So bytes + this much per message bounds the prompt's token count from above.
_TEMPLATE_TOKENS_PER_MESSAGE = 16

_settling: set[asyncio.Task] = set()
"""Settlement tasks in flight (asyncio keeps only weak references to tasks)."""


class QuotaRefused(ApiError):
    """A 429 of admission. ``rate_limit``: the limiter's state as the refusal found it, for the
    answer's ``x-ratelimit-*`` headers."""

    status = 429
    rate_limit: HeaderState = HeaderState()

    def with_rate_limit(self, state: HeaderState) -> QuotaRefused:
        self.rate_limit = state
        return self


class RateLimitExceeded(QuotaRefused):
    type = "requests"
    code = "rate_limit_exceeded"


class InsufficientQuota(QuotaRefused):
    type = "insufficient_quota"
    code = "insufficient_quota"


@dataclass
class Reservation:
    """What admission took, for settlement to give back, and the limiter's state it left."""

    response_id: str
    organization_id: int
    model: str
    reserved_tokens: int
    checks: tuple[Check, ...]
    limiter_reserved: bool
    """False when the limiter was unavailable at admission: there is nothing to give back."""
    rate_limit: HeaderState
    """The limiter's state after admission: what the answer's ``x-ratelimit-*`` headers report
    (empty: nothing limits the caller, or the limiter was away and admission failed open)."""
    started: float
    settled: bool = False
    settled_rate_limit: HeaderState | None = None
    """The limiter's state after settlement (None until then, or when the limiter was away)."""


def input_tokens_estimate(
    *, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, ceiling: int
) -> int:
    """An upper bound of the prompt's tokens without a tokenizer round trip: its UTF-8 bytes
    plus the chat template's overhead, and never more than ``ceiling`` (the prompt was fitted
    into the context, so it cannot exceed the context minus the output budget). Over-reserving
    costs nothing in the end: settlement gives back whatever was not used."""
    size = len(json.dumps(messages, ensure_ascii=False).encode())
    size += len(json.dumps(tools, ensure_ascii=False).encode()) if tools else 0
    size += _TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) + 1)
    return max(min(size, ceiling), 1)


async def _limits(principal: ApiPrincipal) -> EffectiveLimits:
    return limits_cached(
        organization_id=principal.organization.pk,
        project_id=principal.project.pk if principal.project else None,
        api_key_id=principal.api_key.pk,
    ) or await db_async(limits_for)(
        organization=principal.organization, project=principal.project, api_key=principal.api_key
    )


async def quota_admit(
    *,
    principal: ApiPrincipal,
    response_id: str,
    request_id: str,
    model: str,
    service_tier: str,
    store: bool,
    input_tokens_estimate: int,
    max_output_tokens: int,
) -> Reservation:
    """Admit one response or raise the 429 that says why not (see the module docstring)."""
    limits = await _limits(principal)
    reserved = input_tokens_estimate + max_output_tokens
    checks = tuple(limits.checks(tokens=reserved, admission=True))
    decision: Decision | None = None
    if checks:
        try:
            decision = await get_limiter().admit(checks, member=response_id)
        except LimiterUnavailable:
            decision = None  # fail open (logged by the limiter)
    state = (header_state(decision.outcomes) if decision is not None else None) or HeaderState()
    if checks:
        record_limiter_decision(
            organization=principal.organization.public_id,
            decision="fail_open"
            if decision is None
            else ("allowed" if decision.allowed else "rate_limited"),
        )
    if decision is not None and not decision.allowed:
        await db_async(usage_refusal_count)(
            organization_id=principal.organization.pk, model=model, insufficient_quota=False
        )
        raise _rate_limit_error(decision, model=model, requested=reserved).with_rate_limit(state)

    limiter_reserved = decision is not None and bool(checks)
    if limits.cost_budgets:
        over = await db_async(cost_budget_exceeded)(
            organization_id=principal.organization.pk,
            budgets=[
                (
                    scope.pk if scope.scope == "project" else None,
                    scope.monthly_cost_budget,
                    scope.label,
                )
                for scope in limits.cost_budgets
            ],
        )
        if over is not None:
            record_limiter_decision(
                organization=principal.organization.public_id, decision="quota_exceeded"
            )
            if limiter_reserved:
                await _give_back(checks, member=response_id, tokens=reserved)
            await db_async(usage_refusal_count)(
                organization_id=principal.organization.pk, model=model, insufficient_quota=True
            )
            raise _cost_budget_error(*over).with_rate_limit(state)
    holds = tuple(
        BudgetHold(
            project_id=scope.pk if scope.scope == "project" else None,
            budget=scope.monthly_token_budget,
            label=scope.label,
        )
        for scope in limits.hard_budgets
    )
    try:
        await db_async(usage_record_open)(
            response_id=response_id,
            request_id=request_id,
            organization_id=principal.organization.pk,
            project_id=principal.project.pk if principal.project else None,
            api_key_id=principal.api_key.pk,
            model=model,
            service_tier=service_tier,
            stored=store,
            reserved_tokens=reserved,
            limiter_checks=[_check_dump(c) for c in checks] if limiter_reserved else [],
            holds=holds,
        )
    except BudgetExhausted as exhausted:
        record_limiter_decision(
            organization=principal.organization.public_id, decision="quota_exceeded"
        )
        if limiter_reserved:
            await _give_back(checks, member=response_id, tokens=reserved)
        await db_async(usage_refusal_count)(
            organization_id=principal.organization.pk, model=model, insufficient_quota=True
        )
        raise _insufficient_quota_error(exhausted).with_rate_limit(state) from None
    except BaseException:
        if limiter_reserved:
            await _give_back(checks, member=response_id, tokens=reserved)
        raise
    return Reservation(
        response_id=response_id,
        organization_id=principal.organization.pk,
        model=model,
        reserved_tokens=reserved,
        checks=checks,
        limiter_reserved=limiter_reserved,
        rate_limit=state,
        started=time.monotonic(),
    )


def _check_dump(check: Check) -> list:
    return [check.key, check.kind, check.limit, check.period_ms, check.cost, check.scope]


def _check_load(data: list) -> Check:
    key, kind, limit, period_ms, cost, scope = data
    return Check(key, kind, int(limit), float(period_ms), int(cost), scope)


async def _give_back(checks: tuple[Check, ...], *, member: str, tokens: int) -> None:
    """Undo an admission that did not lead to a response (the request itself stays counted)."""
    undo = [replace(c, cost=-tokens if c.kind == "tokens" else 0) for c in checks]
    try:
        await get_limiter().settle(undo, member=member)
    except LimiterUnavailable:
        pass


def _scope_phrase(check: Check) -> str:
    return (
        f"for API key {check.scope[8:]}"
        if check.scope.startswith("API key")
        else (f"in {check.scope}")
    )


def _rate_limit_error(decision: Decision, *, model: str, requested: int) -> RateLimitExceeded:
    limited = [o for o in decision.outcomes if o.limited]
    # The request passes only when every limit does: wait for the slowest one.
    never = [o for o in limited if o.retry_after_ms == NEVER]
    if never:
        outcome = never[0]
        check = outcome.check
        message = (
            f"Request too large for {model} {_scope_phrase(check)} on tokens per min (TPM): "
            f"Limit {check.limit}, Requested {requested}. The input or output tokens must be "
            "reduced in order to run successfully."
        )
        headers = rl_headers.retry_after_headers(int(check.period_ms))
        headers["x-should-retry"] = "false"
        return RateLimitExceeded(message, type="tokens", headers=headers)
    outcome = max(limited, key=lambda o: o.retry_after_ms)
    check = outcome.check
    wait = rl_headers.go_duration(max(outcome.retry_after_ms, 1))
    if check.kind == "concurrency":
        message = (
            f"Rate limit reached for {model} {_scope_phrase(check)} on concurrent requests: "
            f"Limit {check.limit} in progress. Please try again once a response has finished."
        )
        kind = "requests"
    else:
        unit = "requests per min (RPM)" if check.kind == "requests" else "tokens per min (TPM)"
        used = max(check.limit - outcome.remaining, 0)
        message = (
            f"Rate limit reached for {model} {_scope_phrase(check)} on {unit}: "
            f"Limit {check.limit}, Used {used}, Requested {check.cost}. "
            f"Please try again in {wait}."
        )
        kind = check.kind
    return RateLimitExceeded(
        message, type=kind, headers=rl_headers.retry_after_headers(outcome.retry_after_ms)
    )


def _cost_budget_error(label: str, budget, spent) -> InsufficientQuota:
    now = timezone.now()
    headers = rl_headers.retry_after_headers(
        int((next_month_start(now) - now).total_seconds() * 1000)
    )
    headers["x-should-retry"] = "false"
    return InsufficientQuota(
        f"You exceeded your current quota: the monthly budget of {label} (USD {budget:.2f}) is "
        f"spent (USD {spent:.2f} this month). Ask an administrator to raise the budget.",
        headers=headers,
    )


def _insufficient_quota_error(exhausted: BudgetExhausted) -> InsufficientQuota:
    now = timezone.now()
    wait_ms = int((next_month_start(now) - now).total_seconds() * 1000)
    headers = rl_headers.retry_after_headers(wait_ms)
    headers["x-should-retry"] = "false"
    return InsufficientQuota(
        "You exceeded your current quota: the monthly token budget of "
        f"{exhausted.hold.label} ({exhausted.hold.budget} tokens) has {exhausted.left} left, "
        f"and this request may use up to {exhausted.requested} (input + max_output_tokens). "
        "Lower max_output_tokens, or ask an administrator to raise the budget.",
        headers=headers,
    )


# --- settlement --------------------------------------------------------------------------------


def quota_settle_start(
    *, reservation: Reservation | None, status: str, usage: TokenUsage, estimated: bool
) -> asyncio.Task | None:
    """Start settling ``reservation`` with how the response ended, at most once: ``status`` its
    final status, ``usage`` the tokens to bill, ``estimated`` when the engine reported none.

    Runs as its own task: it completes even if the caller is cancelled again while waiting
    (await it under ``asyncio.shield``)."""
    if reservation is None or reservation.settled:
        return None
    reservation.settled = True
    return _settling_task(
        quota_settle(reservation=reservation, status=status, usage=usage, estimated=estimated)
    )


def quota_settle_by_id_start(
    *, response_id: str, status: str, usage: TokenUsage, estimated: bool
) -> asyncio.Task:
    """:func:`quota_settle_start` for a reservation made in another process (a background
    response admitted by the web process, run by a worker): rebuilt from its ledger row."""
    return _settling_task(
        _settle_by_response_id(response_id, status=status, usage=usage, estimated=estimated)
    )


def _settling_task(coro) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    _settling.add(task)
    task.add_done_callback(_settling.discard)
    return task


def _reservation_load(response_id: str) -> Reservation | None:
    from quotas.models import UsageRecord

    row = UsageRecord.objects.filter(
        response_id=response_id, status=UsageRecord.Status.RESERVED
    ).first()
    if row is None:
        return None
    age = (timezone.now() - row.created_at).total_seconds()
    return Reservation(
        response_id=row.response_id,
        organization_id=row.organization_id,
        model=row.model,
        reserved_tokens=row.reserved_tokens,
        checks=tuple(_check_load(c) for c in row.limiter_checks),
        limiter_reserved=bool(row.limiter_checks),
        rate_limit=HeaderState(),
        started=time.monotonic() - age,
        settled=True,
    )


async def _settle_by_response_id(
    response_id: str, *, status: str, usage: TokenUsage, estimated: bool
) -> None:
    try:
        reservation = await db_async(_reservation_load)(response_id)
    except Exception:
        logger.exception("could not load the reservation of %s", response_id)
        return
    if reservation is not None:
        await quota_settle(reservation=reservation, status=status, usage=usage, estimated=estimated)


_FINAL = {"completed", "incomplete", "failed", "cancelled"}


async def quota_settle(
    *, reservation: Reservation, status: str, usage: TokenUsage, estimated: bool = False
) -> None:
    """Settle now (see :func:`quota_settle_start`); a status that is not final counts as
    ``failed``."""
    status = status if status in _FINAL else "failed"
    latency_ms = int((time.monotonic() - reservation.started) * 1000)

    if reservation.checks:
        already = reservation.reserved_tokens if reservation.limiter_reserved else 0
        correction = usage.total_tokens - already
        settle = [
            replace(c, cost=correction if c.kind == "tokens" else 0) for c in reservation.checks
        ]
        try:
            outcomes = await get_limiter().settle(settle, member=reservation.response_id)
            reservation.settled_rate_limit = header_state(outcomes)
        except LimiterUnavailable:
            pass
        except Exception:
            logger.exception("could not settle the rate limits of %s", reservation.response_id)
    try:
        # Settlement outlives the request: see core.db.db_async.
        await db_async(usage_record_settle)(
            response_id=reservation.response_id,
            status=status,
            usage=usage,
            estimated=estimated,
            latency_ms=latency_ms,
        )
    except Exception:
        # The row stays ``reserved``; the sweeper settles it from the stored response.
        logger.exception("could not write the usage of %s", reservation.response_id)
