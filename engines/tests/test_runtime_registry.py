"""The engine registry (DB → engine, per-loop cache, overrides) and ``manage.py syncmodels``."""

from __future__ import annotations

import asyncio
import json
from io import StringIO

import pytest
from django.core.management import call_command

from engines.models import EngineReplica, ServedModel
from engines.runtime import registry
from engines.runtime.pool import ReplicaSpec
from engines.runtime.registry import (
    EngineConfig,
    aclose_engines,
    build_engine,
    build_engine_for_model,
    clear_engine_overrides,
    engine_override,
    get_engine,
    load_engine_config,
    register_engine_override,
)
from engines.runtime.vllm import VllmEngine
from testsupport.scripted_engine import ScriptedEngine


@pytest.fixture(autouse=True)
def _no_overrides():
    clear_engine_overrides()
    yield
    clear_engine_overrides()


def make_model(name: str = "m1", *, enabled: bool = True) -> ServedModel:
    model = ServedModel.objects.create(name=name, upstream_model=f"{name}-up", enabled=enabled)
    EngineReplica.objects.create(model=model, base_url="http://10.0.0.2:8000/v1", api_key="k2")
    EngineReplica.objects.create(model=model, base_url="http://10.0.0.1:8000/v1")
    EngineReplica.objects.create(model=model, base_url="http://10.0.0.9:8000/v1", enabled=False)
    return model


# --- overrides (no database) -------------------------------------------------------------------
async def test_override_wins_in_every_loop_until_cleared() -> None:
    engine = ScriptedEngine()
    register_engine_override("anything", engine)
    assert await get_engine("anything") is engine
    assert build_engine_for_model("anything") is engine
    clear_engine_overrides()
    assert "anything" not in registry._overrides


async def test_engine_override_context_manager_restores() -> None:
    outer, inner = ScriptedEngine(), ScriptedEngine()
    register_engine_override("m", outer)
    with engine_override("m", inner):
        assert await get_engine("m") is inner
    assert await get_engine("m") is outer


def test_build_engine_needs_no_loop_and_no_io() -> None:
    config = EngineConfig(
        name="m",
        upstream_model="up",
        replicas=(ReplicaSpec(base_url="http://a:1/v1"), ReplicaSpec(base_url="http://b:1/v1/")),
    )
    engine = build_engine(config, secret="s")
    assert isinstance(engine, VllmEngine)
    assert engine.upstream_model == "up"
    assert [r.base_url for r in engine.pool.replicas] == ["http://a:1/v1", "http://b:1/v1"]


# --- database ----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_load_engine_config_reads_enabled_replicas_only() -> None:
    make_model()
    config = load_engine_config("m1")
    assert config == EngineConfig(
        name="m1",
        upstream_model="m1-up",
        replicas=(
            ReplicaSpec(base_url="http://10.0.0.1:8000/v1", api_key=""),
            ReplicaSpec(base_url="http://10.0.0.2:8000/v1", api_key="k2"),
        ),
    )


@pytest.mark.django_db
def test_unknown_or_disabled_model_is_lookup_error() -> None:
    make_model("off", enabled=False)
    with pytest.raises(LookupError):
        load_engine_config("nope")
    with pytest.raises(LookupError):
        build_engine_for_model("off")


@pytest.mark.django_db
def test_build_engine_for_model_uses_settings(settings) -> None:
    settings.ENGINE_CONNECT_TIMEOUT_SECONDS = 1.5
    settings.ENGINE_READ_TIMEOUT_SECONDS = 42.0
    settings.ENGINE_HEALTH_INTERVAL_SECONDS = 0.7
    make_model()
    engine = build_engine_for_model("m1")
    assert isinstance(engine, VllmEngine)
    pool = engine.pool
    assert (pool.connect_timeout, pool.read_timeout, pool.health_interval) == (1.5, 42.0, 0.7)
    assert len(pool.replicas) == 2


def _fake_loader(calls: list[str], configs: dict[str, EngineConfig]):
    def load(model_name: str) -> EngineConfig:
        calls.append(model_name)
        if model_name not in configs:
            raise LookupError(model_name)
        return configs[model_name]

    return load


async def test_get_engine_caches_per_loop_and_refreshes(monkeypatch, settings) -> None:
    calls: list[str] = []
    config = EngineConfig(name="m", upstream_model="up", replicas=(ReplicaSpec("http://a:1/v1"),))
    configs = {"m": config}
    monkeypatch.setattr(registry, "load_engine_config", _fake_loader(calls, configs))
    settings.ENGINE_REGISTRY_REFRESH_SECONDS = 60
    try:
        first = await get_engine("m")
        assert await get_engine("m") is first
        assert calls == ["m"]
        with pytest.raises(LookupError):
            await get_engine("unknown")

        # After the refresh interval the same config keeps the same engine ...
        settings.ENGINE_REGISTRY_REFRESH_SECONDS = 0
        assert await get_engine("m") is first
        # ... and a changed config replaces it (the old one is retired once idle).
        configs["m"] = EngineConfig(
            name="m", upstream_model="up", replicas=(ReplicaSpec("http://b:1/v1"),)
        )
        second = await get_engine("m")
        assert second is not first
        assert [r.base_url for r in second.pool.replicas] == ["http://b:1/v1"]
        await asyncio.sleep(0)  # let the retirement task run
        assert await _eventually(lambda: first.pool.closed)
    finally:
        await aclose_engines()


async def _eventually(predicate, within: float = 2.0) -> bool:
    for _ in range(int(within / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def test_each_event_loop_gets_its_own_engine(monkeypatch) -> None:
    config = EngineConfig(name="m", upstream_model="up", replicas=(ReplicaSpec("http://a:1/v1"),))
    monkeypatch.setattr(registry, "load_engine_config", _fake_loader([], {"m": config}))

    async def fetch():
        try:
            return await get_engine("m")
        finally:
            await aclose_engines()

    assert asyncio.run(fetch()) is not asyncio.run(fetch())


# --- syncmodels ----------------------------------------------------------------------------------
def run_sync(*args: str) -> str:
    out = StringIO()
    call_command("syncmodels", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_syncmodels_is_idempotent_and_disables_unlisted_replicas(settings) -> None:
    settings.ENGINE_MODELS = [
        {
            "name": "small",
            "upstream_model": "small-up",
            "context_length": 2048,
            "tool_call_parser": "hermes",
            "replicas": [
                "http://127.0.0.1:8100/v1/",
                {"base_url": "http://vllm-1:8000/v1", "api_key": "secret"},
            ],
        }
    ]
    first = json.loads(run_sync("--json"))["models"][0]
    assert first["created"] is True
    assert sorted(first["replicas_added"]) == ["http://127.0.0.1:8100/v1", "http://vllm-1:8000/v1"]

    model = ServedModel.objects.get(name="small")
    assert (model.upstream_model, model.context_length, model.tool_call_parser) == (
        "small-up",
        2048,
        "hermes",
    )
    assert EngineReplica.objects.get(base_url="http://vllm-1:8000/v1").api_key == "secret"

    second = json.loads(run_sync("--json"))["models"][0]
    assert second == {
        "name": "small",
        "created": False,
        "updated_fields": [],
        "replicas_added": [],
        "replicas_updated": [],
        "replicas_disabled": [],
    }

    settings.ENGINE_MODELS[0]["replicas"] = ["http://vllm-1:8000/v1"]
    settings.ENGINE_MODELS[0]["context_length"] = 4096
    third = json.loads(run_sync("--json"))["models"][0]
    assert third["updated_fields"] == ["context_length"]
    assert third["replicas_disabled"] == ["http://127.0.0.1:8100/v1"]
    assert third["replicas_updated"] == ["http://vllm-1:8000/v1"]  # api key removed
    assert EngineReplica.objects.filter(model=model).count() == 2
    assert list(
        EngineReplica.objects.filter(model=model, enabled=True).values_list("base_url", flat=True)
    ) == ["http://vllm-1:8000/v1"]
    assert "model small: unchanged" in run_sync()


@pytest.mark.django_db
def test_syncmodels_seeds_the_default_setting() -> None:
    from django.conf import settings

    output = run_sync()
    for entry in settings.ENGINE_MODELS:
        assert f"model {entry['name']}" in output
        assert ServedModel.objects.filter(name=entry["name"], enabled=True).exists()


@pytest.mark.django_db
def test_syncmodels_rejects_bad_entries(settings) -> None:
    from django.core.management.base import CommandError

    settings.ENGINE_MODELS = [{"name": "x", "replicas": ["ftp://nope"]}]
    with pytest.raises(CommandError, match="invalid replica URL"):
        run_sync()
    settings.ENGINE_MODELS = [{"name": "x", "colour": "blue"}]
    with pytest.raises(CommandError, match="unknown keys"):
        run_sync()
    assert not ServedModel.objects.filter(name="x").exists()
