"""Quotas over real sockets: the official ``openai`` SDK against a daphne process of our own
(a 2-second "minute", so a limit resets within a test), a fake vLLM replica, and a private
redis-server this module starts, kills with SIGKILL and restarts (the shared one on 6379 is
never touched).

* the SDK's own retry honours our ``retry-after-ms``/``retry-after`` and then succeeds, and an
  ``insufficient_quota`` 429 is not retried;
* every 2xx and 429 carries OpenAI's rate-limit headers in Go's duration grammar;
* ledger totals equal the sum of the responses after a worker (daphne) is killed mid-stream and
  the limiter's Redis is killed and restarted (fail-open meanwhile, nothing lost, nothing
  counted twice).
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import httpx
import httpx2
import openai
import pytest
from django.db.models import Sum

from engines.models import EngineReplica, ServedModel
from quotas.models import MonthlyUsage, UsageRecord
from quotas.services.headers import UNLIMITED
from quotas.services.ledger import usage_reconcile
from quotas.services.limits import limits_set
from responses.services.usage import response_reservations_expire
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture
from testsupport.live_server import DaphneProcess
from testsupport.redis_servers import PrivateRedis
from testsupport.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?(ms|s))?$")
WINDOW_SECONDS = 2.0


class Platform(DaphneProcess):
    """daphne serving config.asgi against the test database, the limiter on ``redis``; started
    again on the same port after a kill."""

    def __init__(self, redis: PrivateRedis) -> None:
        super().__init__(
            {
                "QUOTA_REDIS_URL": redis.url,
                "QUOTA_WINDOW_SECONDS": str(WINDOW_SECONDS),
                "QUOTA_LIMITS_CACHE_SECONDS": "0",  # limits set by a test apply at once
                "QUOTA_REDIS_RETRY_SECONDS": "0.2",
            }
        )
        self.redis = redis


upstream = fake_vllm_fixture(
    by_model={
        "up-text": FakeBehavior(text="Quota test answer.", prompt_tokens=7),
        "up-slow": FakeBehavior(text=" ".join(f"w{i}" for i in range(3000)), delay=0.01),
    }
)


@pytest.fixture(scope="module")
def platform(django_db_setup):
    redis = PrivateRedis()
    redis.start()
    served = Platform(redis=redis)
    served.start()
    yield served
    served.stop()
    if redis.process and redis.process.poll() is None:
        redis.kill()


@pytest.fixture
def models(transactional_cast, upstream, request):
    names = {}
    for kind in ("text", "slow"):
        model = ServedModel.objects.create(
            name=f"q-{kind}-{upstream.port}-{request.node.name[-20:]}".replace("[", "-")[:128],
            upstream_model=f"up-{kind}",
            default_max_output_tokens=256,
        )
        EngineReplica.objects.create(model=model, base_url=upstream.base_url)
        names[kind] = model.name
    return names


class Recording(httpx2.HTTPTransport):
    """Every HTTP answer the SDK received, retries included."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[float, int, dict[str, str]]] = []

    def handle_request(self, request):
        response = super().handle_request(request)
        self.answers.append((time.monotonic(), response.status_code, dict(response.headers)))
        return response


def _sdk(platform: Platform, persona, *, max_retries: int) -> tuple[openai.OpenAI, Recording]:
    wire = Recording()
    client = openai.OpenAI(
        base_url=f"{platform.base_url}/v1",
        api_key=persona.secret,
        max_retries=max_retries,
        timeout=30,
        http_client=openai.DefaultHttpxClient(transport=wire),
    )
    return client, wire


def _assert_rate_headers(headers: dict[str, str]) -> None:
    for kind in ("requests", "tokens"):
        assert int(headers[f"x-ratelimit-limit-{kind}"]) >= 1
        assert int(headers[f"x-ratelimit-remaining-{kind}"]) >= 0
        assert GO_DURATION.match(headers[f"x-ratelimit-reset-{kind}"])


@pytest.mark.compliance("M3")
def test_the_sdk_retries_after_our_retry_after_and_then_succeeds(
    platform, models, transactional_cast
):
    alice = transactional_cast.alice
    limits_set(organization=alice.organization, requests_per_minute=1, tokens_per_minute=100_000)
    client, wire = _sdk(platform, alice, max_retries=2)
    first = client.responses.create(model=models["text"], input="hi")
    assert first.output_text == "Quota test answer."
    second = client.responses.create(model=models["text"], input="again")  # 429, wait, retry
    assert second.output_text == "Quota test answer."
    client.close()

    statuses = [status for _, status, _ in wire.answers]
    assert statuses == [200, 429, 200]
    (_, _, _ok), (refused_at, _, refused), (retried_at, _, _) = wire.answers
    assert refused["x-ratelimit-remaining-requests"] == "0"
    assert int(refused["retry-after"]) >= 1
    wait_ms = int(refused["retry-after-ms"])
    assert 0 < wait_ms <= WINDOW_SECONDS * 1000
    # The SDK slept what we asked (retry-after-ms wins over its own backoff), not less.
    assert retried_at - refused_at >= wait_ms / 1000 - 0.05
    for _, _, headers in wire.answers:
        _assert_rate_headers(headers)
    assert UsageRecord.objects.filter(organization=alice.organization).count() == 2


@pytest.mark.compliance("M2", "M3")
def test_insufficient_quota_is_not_retried(platform, models, transactional_cast):
    alice = transactional_cast.alice
    limits_set(organization=alice.organization, monthly_token_budget=10)
    client, wire = _sdk(platform, alice, max_retries=3)
    with pytest.raises(openai.RateLimitError) as raised:
        client.responses.create(model=models["text"], input="hi")
    client.close()
    assert raised.value.code == "insufficient_quota"
    assert [status for _, status, _ in wire.answers] == [429]  # no retry
    assert wire.answers[0][2]["x-should-retry"] == "false"
    assert not UsageRecord.objects.exists()


def test_ledger_totals_survive_a_killed_worker_and_a_redis_restart(
    platform, models, transactional_cast
):
    alice = transactional_cast.alice
    limits_set(
        organization=alice.organization,
        requests_per_minute=100_000,
        tokens_per_minute=100_000_000,
        max_concurrent=50,
        monthly_token_budget=100_000_000,
    )
    client, wire = _sdk(platform, alice, max_retries=0)
    served: dict[str, int] = {}  # response id -> total tokens the client was told

    def ask(n: int) -> None:
        for _ in range(n):
            response = client.responses.create(model=models["text"], input="count me")
            served[response.id] = response.usage.total_tokens

    ask(4)
    assert all("x-ratelimit-limit-requests" in h for _, _, h in wire.answers)

    # A worker dies mid-stream: three streams are running when daphne gets SIGKILL.
    killed: list[str] = []
    # Everything is kept referenced: a collected client or line iterator closes its connection.
    streams, holders, readers = [], [], []
    for _ in range(3):
        holders.append(httpx.Client(timeout=30))
        stream = holders[-1].stream(
            "POST",
            f"{platform.base_url}/v1/responses",
            json={"model": models["slow"], "input": "long", "stream": True},
            headers=alice.headers,
        )
        response = stream.__enter__()
        readers.append(response.iter_lines())
        for line in readers[-1]:
            event = json.loads(line[6:]) if line.startswith("data: ") else {}
            if event.get("type") == "response.created":
                killed.append(event["response"]["id"])
            if event.get("type") == "response.output_text.delta":
                break
        streams.append(stream)
    platform.kill()
    for stream in streams:
        try:
            stream.__exit__(None, None, None)
        except httpx.HTTPError:
            pass
    for holder in holders:
        holder.close()
    assert UsageRecord.objects.filter(response_id__in=killed, status="reserved").count() == 3

    # The limiter's Redis dies too; a new worker serves meanwhile (fail open, and the headers
    # report it: unlimited).
    platform.redis.kill()
    platform.start()
    before = len(wire.answers)
    ask(3)
    assert all(
        h.get("x-ratelimit-limit-requests") == str(UNLIMITED) for _, _, h in wire.answers[before:]
    )
    platform.redis.start()  # same port, empty: a fresh window

    def limited_again() -> bool:  # once QUOTA_REDIS_RETRY_SECONDS have passed
        ask(1)
        return "x-ratelimit-limit-requests" in wire.answers[-1][2]

    wait_until(limited_again, within=10, every=0.1, what="the limiter is back")
    before = len(wire.answers)
    ask(3)
    assert all("x-ratelimit-limit-requests" in h for _, _, h in wire.answers[before:])
    client.close()

    # The sweeper settles what the dead worker never could (in production: Celery beat).
    assert response_reservations_expire(older_than=timedelta(0)) == 3
    rows = UsageRecord.objects.filter(organization=alice.organization)
    assert rows.count() == len(served) + len(killed)  # one row per turn
    assert not rows.filter(status="reserved").exists()
    assert set(rows.filter(status="expired").values_list("response_id", flat=True)) == set(killed)
    completed = rows.filter(status="completed")
    assert dict(completed.values_list("response_id", "total_tokens")) == served
    assert completed.aggregate(n=Sum("total_tokens"))["n"] == sum(served.values())
    counter = MonthlyUsage.objects.get(organization=alice.organization, project=None)
    assert counter.reserved_tokens == 0
    assert counter.used_tokens == rows.aggregate(n=Sum("total_tokens"))["n"]
    assert usage_reconcile(organization_id=alice.organization.pk) == []


async def test_a_hung_redis_costs_at_most_a_fraction_of_a_second(platform):
    """Redis stopped (SIGSTOP: the socket accepts, nothing answers): the decision gives up after
    QUOTA_REDIS_TIMEOUT_SECONDS (one retry included) and the next ones do not even try."""
    from quotas.services.limiter import Check, LimiterUnavailable, RedisLimiter

    limiter = RedisLimiter(url=platform.redis.url, prefix="hung", timeout=0.25, retry_seconds=5)
    check = Check("{o1}:o1:r", "requests", 5, 60_000, 1)
    assert (await limiter.admit([check], member="warm")).allowed  # a pooled connection
    platform.redis.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable):
            await limiter.admit([check], member="a")
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable):
            await limiter.admit([check], member="b")
        assert time.monotonic() - started < 0.01  # within the retry window: not tried
    finally:
        platform.redis.process.send_signal(signal.SIGCONT)
    await limiter.aclose()
