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

``generate_events`` settles the reservation in its ``finally`` through
:func:`quota_settle_start`, exactly once, whatever the ending: the limiter gets back what was not
used (or is charged an overrun) and frees the slot, and the ledger row gets the real usage.

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
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from core.db import db_async
from core.errors import ApiError
from core.metrics import record_limiter_decision
from quotas.services import headers as rl_headers
from quotas.services.headers import HeaderState, current_slot, header_state
from quotas.services.ledger import (
    BudgetExhausted,
    BudgetHold,
    TokenUsage,
    cost_budget_exceeded,
    next_month_start,
    usage_from_body,
    usage_record_open,
    usage_record_settle,
    usage_refusal_count,
)
from quotas.services.limiter import NEVER, Check, Decision, LimiterUnavailable, get_limiter
from quotas.services.limits import EffectiveLimits, limits_cached, limits_for
from responses.streaming import events as ev

if TYPE_CHECKING:
    from responses.streaming.builder import StreamBuilder
    from tenants.principal import ApiPrincipal

logger = logging.getLogger(__name__)

# Chat templates add a handful of tokens per message; a byte-level BPE token covers at least one
# byte. So bytes + this much per message bounds the prompt's token count from above.
_TEMPLATE_TOKENS_PER_MESSAGE = 16
_CHARS_PER_STREAMED_TOKEN = 4

_settling: set[asyncio.Task] = set()
"""Settlement tasks in flight (asyncio keeps only weak references to tasks)."""


class RateLimitExceeded(ApiError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class InsufficientQuota(ApiError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


@dataclass
class Reservation:
    """What admission took, for settlement to give back."""

    response_id: str
    organization_id: int
    model: str
    reserved_tokens: int
    checks: tuple[Check, ...]
    limiter_reserved: bool
    """False when the limiter was unavailable at admission: there is nothing to give back."""
    emit_events: bool
    """Opted in: stream ``response.rate_limits.updated`` events."""
    admitted: HeaderState | None
    started: float
    settled: bool = False
    after_settlement: HeaderState | None = None


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
    state = header_state(decision.outcomes) if decision is not None else None
    slot = current_slot()
    if slot is not None:
        slot.decided = True
        slot.state = state
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
        raise _rate_limit_error(decision, model=model, requested=reserved)

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
                if scope.monthly_cost_budget is not None
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
            raise _cost_budget_error(*over)
    holds = tuple(
        BudgetHold(
            project_id=scope.pk if scope.scope == "project" else None,
            budget=scope.monthly_token_budget,
            label=scope.label,
        )
        for scope in limits.hard_budgets
        if scope.monthly_token_budget is not None
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
        raise _insufficient_quota_error(exhausted) from None
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
        emit_events=bool(slot and slot.events_opt_in),
        admitted=state,
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
    *, reservation: Reservation | None, builder: StreamBuilder, by_response_id: bool = False
) -> asyncio.Task | None:
    """Start settling the response's reservation with the response as it ended, at most once.

    Runs as its own task: it completes even if the caller is cancelled again while waiting
    (await it under ``asyncio.shield``). ``by_response_id``: the reservation was made in another
    process (a background response admitted by the web process, run by a worker); it is then
    rebuilt from the ledger row."""
    if reservation is not None:
        if reservation.settled:
            return None
        reservation.settled = True
        coro = quota_settle(reservation=reservation, response=builder.snapshot())
    elif by_response_id:
        coro = _settle_by_response_id(builder.response_id, builder.snapshot())
    else:
        return None
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
        emit_events=False,
        admitted=None,
        started=time.monotonic() - age,
        settled=True,
    )


async def _settle_by_response_id(response_id: str, response: dict[str, Any]) -> None:
    try:
        reservation = await db_async(_reservation_load)(response_id)
    except Exception:
        logger.exception("could not load the reservation of %s", response_id)
        return
    if reservation is not None:
        await quota_settle(reservation=reservation, response=response)


_FINAL = {"completed", "incomplete", "failed", "cancelled"}


async def quota_settle(*, reservation: Reservation, response: dict[str, Any]) -> None:
    usage = usage_from_body(response)
    estimated = usage is None
    if usage is None:
        # No usage from the engine (a disconnect or failure before its last chunk): bill what
        # was streamed, estimated from its length; the prompt's size is unknown, so 0.
        usage = TokenUsage(output_tokens=_streamed_tokens(response.get("output") or []))
    status = response.get("status")
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
            reservation.after_settlement = header_state(outcomes)
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


def _streamed_tokens(output: list[Any]) -> int:
    chars = 0

    def walk(value: Any) -> None:
        nonlocal chars
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("text", "arguments", "refusal") and isinstance(item, str):
                    chars += len(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(output)
    return math.ceil(chars / _CHARS_PER_STREAMED_TOKEN)


# --- rate-limit stream events ------------------------------------------------------------------


def quota_events(
    reservation: Reservation | None, builder: StreamBuilder, *, settled: bool = False
) -> list[dict[str, Any]]:
    """``response.rate_limits.updated`` (numbered by the builder) for a client that opted in:
    the state after admission, or after settlement. Empty otherwise."""
    if reservation is None or not reservation.emit_events:
        return []
    # No state: nothing limits this caller (or the limiter was down and admission failed
    # open); the event still comes, reporting unlimited dimensions like the headers do.
    state = (
        (reservation.after_settlement if settled else None) or reservation.admitted or HeaderState()
    )
    return [builder.stamp_extra(ev.response_rate_limits_updated(rate_limits=state.rate_limits()))]
