"""The Responses side of quotas (responses.services.usage): a response's usage in the ledger's
terms, and the sweep that settles the reservations of dead processes from stored responses."""

from __future__ import annotations

from datetime import timedelta

import pytest

from quotas.models import UsageRecord
from quotas.services.ledger import TokenUsage, usage_reconcile, usage_record_open
from responses.models import StoredResponse
from responses.services.usage import response_reservations_expire, response_usage


def test_the_engines_usage_is_billed_as_reported():
    body = {
        "status": "completed",
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 3},
        },
        "output": [],
    }
    assert response_usage(body) == (
        TokenUsage(input_tokens=12, cached_tokens=4, output_tokens=7, reasoning_tokens=3),
        False,
    )


def test_without_the_engines_usage_the_streamed_text_is_estimated():
    body = {
        "status": "incomplete",
        "usage": None,
        "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "x" * 10}]},
            {"type": "function_call", "arguments": '{"a": 1}'},  # 8 characters
        ],
    }
    assert response_usage(body) == (TokenUsage(output_tokens=5), True)  # ceil(18 / 4)


def _open(cast, response_id: str) -> None:
    usage_record_open(
        response_id=response_id,
        request_id="",
        organization_id=cast.alice.organization.pk,
        project_id=None,
        api_key_id=None,
        model="m1",
        service_tier="default",
        stored=True,
        reserved_tokens=100,
    )


@pytest.mark.django_db
def test_the_sweep_settles_dead_turns_with_the_usage_their_stored_response_recorded(cast):
    _open(cast, "resp_recorded")
    _open(cast, "resp_nothing")
    StoredResponse.objects.create(
        public_id="resp_recorded",
        organization=cast.alice.organization,
        model="m1",
        status="in_progress",
        body={"usage": {"input_tokens": 30, "output_tokens": 9}},
    )
    assert response_reservations_expire(older_than=timedelta(hours=1)) == 0
    assert response_reservations_expire(older_than=timedelta(0)) == 2
    rows = {row.response_id: row for row in UsageRecord.objects.all()}
    recorded, nothing = rows["resp_recorded"], rows["resp_nothing"]
    assert (recorded.status, recorded.input_tokens, recorded.output_tokens) == ("expired", 30, 9)
    assert not recorded.usage_estimated
    assert (nothing.status, nothing.total_tokens, nothing.usage_estimated) == ("expired", 0, True)
    assert usage_reconcile(organization_id=cast.alice.organization.pk) == []
    assert response_reservations_expire(older_than=timedelta(0)) == 0  # settled exactly once
