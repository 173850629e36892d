"""Admission and settlement: the two moments a response meets its quotas.

``response_prepare`` calls :func:`quota_admit` once the prompt is final and before anything is
stored. It reserves, atomically and all-or-nothing, one request, the token estimate (input upper
bound + ``max_output_tokens`` or the model's default) and one in-flight slot against every
limit of the organization, project and key (the limiter), then the hard monthly budgets and the
ledger row (the database; for a stored response, in the transaction that writes its row:
:func:`quota_ledger_open`). A refusal is a 429 shaped like OpenAI's:

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
from quotas.models import UsageRecord
from quotas.services import headers as rl_headers
from quotas.services.headers import HeaderState, header_state
from quotas.services.ledger import (
    BudgetExhausted,
    BudgetHold,
    TokenUsage,
    cost_budget_exceeded,
    next_month_start,
    usage_record_open,
    usage_record_settle_row,
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
    opening: LedgerOpening | None = None
    """What the ledger row is written with (:func:`quota_ledger_open`)."""
    ledger_row: UsageRecord | None = None
    """The ledger row as it was written, kept for settlement (which then need not read it)."""

    @property
    def may_refuse(self) -> bool:
        """The ledger row is still to be written, and writing it may refuse this admission (a
        hard budget to hold)."""
        return self.ledger_row is None and self.opening is not None and bool(self.opening.holds)


@dataclass(frozen=True)
class LedgerOpening:
    request_id: str
    organization_public_id: str
    project_id: int | None
    api_key_id: int | None
    service_tier: str
    stored: bool
    holds: tuple[BudgetHold, ...]


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
    open_ledger: bool = True,
) -> Reservation:
    """Admit one response or raise the 429 that says why not (see the module docstring).
    ``open_ledger=False``: the ledger row is not written here; the caller writes it with
    :func:`quota_ledger_open` in its own transaction (with the response's row), and calls
    :func:`quota_admission_undo` if that fails."""
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
            raise _cost_budget_error(*over).with_rate_limit(state)
    holds = tuple(
        BudgetHold(
            project_id=scope.pk if scope.scope == "project" else None,
            budget=scope.monthly_token_budget,
            label=scope.label,
        )
        for scope in limits.hard_budgets
        if scope.monthly_token_budget is not None
    )
    reservation = Reservation(
        response_id=response_id,
        organization_id=principal.organization.pk,
        model=model,
        reserved_tokens=reserved,
        checks=checks,
        limiter_reserved=limiter_reserved,
        rate_limit=state,
        started=time.monotonic(),
        opening=LedgerOpening(
            request_id=request_id,
            organization_public_id=principal.organization.public_id,
            project_id=principal.project.pk if principal.project else None,
            api_key_id=principal.api_key.pk,
            service_tier=service_tier,
            stored=store,
            holds=holds,
        ),
    )
    if open_ledger:
        try:
            await db_async(quota_ledger_open)(reservation)
        except BaseException as exc:
            await quota_admission_undo(reservation, error=exc)
            raise
    return reservation


def quota_ledger_open(reservation: Reservation) -> None:
    """Write the ledger row of an admission (sync: run it through ``db_async``), holding the
    hard budgets. Inside a caller's transaction it joins it: the responses layer writes it with
    the response's own row, in one round trip to the database. Raises
    :class:`InsufficientQuota` when a budget cannot cover the reservation (nothing is written,
    and the caller's transaction must roll back: raising out of its atomic block does); the
    caller then calls :func:`quota_admission_undo`."""
    opening = reservation.opening
    if opening is None:
        raise RuntimeError(f"{reservation.response_id} was loaded from its ledger row")
    try:
        reservation.ledger_row = usage_record_open(
            response_id=reservation.response_id,
            request_id=opening.request_id,
            organization_id=reservation.organization_id,
            project_id=opening.project_id,
            api_key_id=opening.api_key_id,
            model=reservation.model,
            service_tier=opening.service_tier,
            stored=opening.stored,
            reserved_tokens=reservation.reserved_tokens,
            limiter_checks=(
                [_check_dump(c) for c in reservation.checks] if reservation.limiter_reserved else []
            ),
            holds=opening.holds,
        )
    except BudgetExhausted as exhausted:
        error = _insufficient_quota_error(exhausted).with_rate_limit(reservation.rate_limit)
        raise error from None


async def quota_admission_undo(reservation: Reservation, *, error: BaseException) -> None:
    """Undo an admission whose ledger row could not be written (``error`` says why): the
    limiter gets back what it took (the request itself stays counted), and a budget refusal is
    counted like any other 429. Settles the reservation: nothing more is owed."""
    if reservation.settled:
        return
    reservation.settled = True
    refused = isinstance(error, InsufficientQuota)
    if refused and reservation.opening is not None:
        record_limiter_decision(
            organization=reservation.opening.organization_public_id, decision="quota_exceeded"
        )
    if reservation.limiter_reserved:
        await _give_back(
            reservation.checks, member=reservation.response_id, tokens=reservation.reserved_tokens
        )
    if refused:
        await db_async(usage_refusal_count)(
            organization_id=reservation.organization_id,
            model=reservation.model,
            insufficient_quota=True,
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
#
# Two halves: the limiter's (Redis: give back what was not used, free the slot) and the
# ledger's (PostgreSQL: the row gets the real usage, the counters and the rollup follow). The
# responses layer runs the ledger's half in the transaction that stores the response's outcome
# (:func:`quota_settlement` + :func:`quota_ledger_settle`) and the limiter's beside it
# (:func:`quota_limiter_settle`); :func:`quota_settle` does both for a caller with nothing to
# store.

_FINAL = {"completed", "incomplete", "failed", "cancelled"}


@dataclass(frozen=True)
class Settlement:
    """The ledger's half of settling one response, as plain data."""

    response_id: str
    status: str
    usage: TokenUsage
    estimated: bool
    latency_ms: int | None
    """None: a reservation made in another process (a background response admitted by the web
    process, run by a worker), found and timed through its ledger row."""
    row: UsageRecord | None = None
    """The ledger row as admission wrote it, when this process did."""


def quota_settlement(
    *, reservation: Reservation, status: str, usage: TokenUsage, estimated: bool
) -> Settlement | None:
    """Settle ``reservation`` with how the response ended (``status`` its final status, a status
    that is not final counting as ``failed``; ``usage`` the tokens to bill, ``estimated`` when
    the engine reported none), at most once: None when it was settled already. Returns the
    ledger's half, for :func:`quota_ledger_settle`; the caller also runs
    :func:`quota_limiter_settle`."""
    if reservation.settled:
        return None
    reservation.settled = True
    return Settlement(
        response_id=reservation.response_id,
        status=status if status in _FINAL else "failed",
        usage=usage,
        estimated=estimated,
        latency_ms=int((time.monotonic() - reservation.started) * 1000),
        row=reservation.ledger_row,
    )


def quota_settlement_by_id(
    *, response_id: str, status: str, usage: TokenUsage, estimated: bool
) -> Settlement:
    """:func:`quota_settlement` for a reservation made in another process: the limiter's half
    is then known only once :func:`quota_ledger_settle` has read the ledger row."""
    return Settlement(
        response_id=response_id,
        status=status if status in _FINAL else "failed",
        usage=usage,
        estimated=estimated,
        latency_ms=None,
    )


def quota_ledger_settle(settlement: Settlement) -> Reservation | None:
    """Write the ledger's half (sync: run it through ``db_async``); inside a caller's
    transaction it joins it. Exactly once: a row already settled is left alone. Returns, for a
    settlement by id, the reservation as its ledger row recorded it, whose limiter's half the
    caller then settles with :func:`quota_limiter_settle`; None otherwise."""
    row = usage_record_settle_row(
        response_id=settlement.response_id,
        status=settlement.status,
        usage=settlement.usage,
        estimated=settlement.estimated,
        latency_ms=settlement.latency_ms,
        latency_since_opened=settlement.latency_ms is None,
        opened=settlement.row,
    )
    if row is None or settlement.latency_ms is not None:
        return None
    return Reservation(
        response_id=row.response_id,
        organization_id=row.organization_id,
        model=row.model,
        reserved_tokens=row.reserved_tokens,
        checks=tuple(_check_load(c) for c in row.limiter_checks),
        limiter_reserved=bool(row.limiter_checks),
        rate_limit=HeaderState(),
        started=time.monotonic(),
        settled=True,
    )


async def quota_limiter_settle(*, reservation: Reservation, usage: TokenUsage) -> None:
    """The limiter's half: give back the reserved tokens that were not used (or charge an
    overrun) and free the in-flight slot; leaves the state after it on the reservation. Never
    raises: the limiter's own windows forget what is not given back."""
    if not reservation.checks:
        return
    already = reservation.reserved_tokens if reservation.limiter_reserved else 0
    correction = usage.total_tokens - already
    settle = [replace(c, cost=correction if c.kind == "tokens" else 0) for c in reservation.checks]
    try:
        outcomes = await get_limiter().settle(settle, member=reservation.response_id)
        reservation.settled_rate_limit = header_state(outcomes)
    except LimiterUnavailable:
        pass
    except Exception:
        logger.exception("could not settle the rate limits of %s", reservation.response_id)


def quota_settle_start(
    *, reservation: Reservation | None, status: str, usage: TokenUsage, estimated: bool
) -> asyncio.Task | None:
    """:func:`quota_settle` as its own task, at most once (None when there is nothing to settle):
    it completes even if the caller is cancelled again while waiting (await it under
    ``asyncio.shield``)."""
    if reservation is None:
        return None
    settlement = quota_settlement(
        reservation=reservation, status=status, usage=usage, estimated=estimated
    )
    if settlement is None:
        return None
    task = asyncio.ensure_future(_settle(reservation, settlement))
    _settling.add(task)
    task.add_done_callback(_settling.discard)
    return task


async def quota_settle(
    *, reservation: Reservation, status: str, usage: TokenUsage, estimated: bool = False
) -> None:
    """Both halves now, for a caller with nothing else to write (see :func:`quota_settlement`)."""
    settlement = quota_settlement(
        reservation=reservation, status=status, usage=usage, estimated=estimated
    )
    if settlement is not None:
        await _settle(reservation, settlement)


async def _settle(reservation: Reservation, settlement: Settlement) -> None:
    await quota_limiter_settle(reservation=reservation, usage=settlement.usage)
    try:
        # Settlement outlives the request: see core.db.db_async.
        await db_async(quota_ledger_settle)(settlement)
    except Exception:
        # The row stays ``reserved``; the sweeper settles it from the stored response.
        logger.exception("could not write the usage of %s", reservation.response_id)
