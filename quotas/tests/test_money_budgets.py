"""Monthly budgets in money: once what this month's settled turns cost reaches a hard budget,
requests get 429 insufficient_quota; a soft one serves them. Through the API in process with
the scripted engine."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient

from quotas.models import ModelPrice, MonthlyUsage, UsageDaily
from quotas.services.limits import limits_set
from testsupport.scripted_engine import build_script

pytestmark = pytest.mark.django_db(transaction=True)


async def create(client, persona):
    return await client.post(
        "/v1/responses",
        json.dumps({"model": "scripted", "input": "hi", "max_output_tokens": 100}),
        content_type="application/json",
        headers=persona.headers,
    )


@pytest.fixture
async def priced(scripted_model):
    # 1,000,000 output tokens cost 10,000 USD: 100 output tokens cost 1 USD.
    await ModelPrice.objects.acreate(
        model="scripted", input_per_million=Decimal(0), output_per_million=Decimal(10_000)
    )


async def test_a_hard_money_budget_refuses_once_spent(transactional_cast, engine, priced):
    alice = transactional_cast.alice
    engine.script = build_script(text="ok", input_tokens=10, output_tokens=100)
    await sync_to_async(limits_set)(
        organization=alice.organization, monthly_cost_budget=Decimal("2.50")
    )
    client = AsyncClient()
    statuses = [(await create(client, alice)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # 3 USD spent ≥ 2.50 after the third
    refused = await create(client, alice)
    body = refused.json()["error"]
    assert body["code"] == "insufficient_quota" and "USD 2.50" in body["message"]
    assert refused["x-should-retry"] == "false"
    counter = await MonthlyUsage.objects.aget(organization=alice.organization, project=None)
    assert counter.cost == Decimal(3)
    rollup = await UsageDaily.objects.aget(organization=alice.organization)
    assert rollup.quota_exceeded == 2 and rollup.cost == Decimal(3)


async def test_a_soft_money_budget_is_served(transactional_cast, engine, priced):
    alice = transactional_cast.alice
    engine.script = build_script(text="ok", input_tokens=10, output_tokens=100)
    await sync_to_async(limits_set)(
        organization=alice.organization,
        monthly_cost_budget=Decimal("0.50"),
        budget_is_hard=False,
    )
    client = AsyncClient()
    assert [(await create(client, alice)).status_code for _ in range(3)] == [200] * 3


def test_setlimits_sets_a_money_budget(transactional_cast):
    from io import StringIO

    out = StringIO()
    call_command("setlimits", "--org", "acme", "--monthly-usd", "12.5", "--json", stdout=out)
    assert json.loads(out.getvalue())["monthly_cost_budget"] == "12.50"
