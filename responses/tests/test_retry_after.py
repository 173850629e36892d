"""M3 for the engine: a 503 because no replica is healthy says when to retry, from the replica
pool's real state (its next health check), not a constant."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from engines.embedded.server import free_port
from engines.models import EngineReplica, ServedModel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.compliance("M3")
async def test_no_healthy_replica_is_a_503_that_says_when_the_next_health_check_is(
    transactional_cast, settings
):
    settings.ENGINE_HEALTH_INTERVAL_SECONDS = 40.0
    model = await ServedModel.objects.acreate(name=f"down-{free_port()}", upstream_model="down")
    await EngineReplica.objects.acreate(
        model=model,
        base_url=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens
    )
    answers = []
    for _ in range(2):
        answer = await AsyncClient().post(
            "/v1/responses",
            json.dumps({"model": model.name, "input": "hi"}),
            content_type="application/json",
            headers=transactional_cast.alice.headers,
        )
        assert answer.status_code == 503, answer.content
        assert answer.json()["error"]["code"] == "engine_unavailable"
        answers.append(int(answer["retry-after-ms"]))
        assert answer["retry-after"] == str(-(-answers[-1] // 1000))
    # The replica was probed (or refused a connection) just now; the next probe round is a
    # health interval away, give or take the probe's own timeout.
    assert all(1000 < wait <= 42_000 for wait in answers)
    assert answers[1] <= answers[0]  # the same deadline, closer
