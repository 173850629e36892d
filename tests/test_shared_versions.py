"""core.versions: the tokens caches are checked against, in Redis or in the data directory."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from core.versions import version_bump, version_get, versions_get

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(params=["redis", "file"])
def store(request, settings, tmp_path):
    if request.param == "file":
        settings.DATA_DIR = tmp_path
        with override_settings(CACHES=LOCMEM):
            yield request.param
    else:
        yield request.param


@pytest.mark.django_db
def test_a_token_stays_until_bumped_and_never_comes_back(store):
    first = version_get("things")
    assert first is not None and version_get("things") == first
    version_bump("things")
    second = version_get("things")
    assert second not in (None, first)
    assert asyncio.run(versions_get("things", "others"))["things"] == second


@pytest.mark.django_db
def test_a_lost_store_gives_a_new_token(store, settings):
    first = version_get("things")
    if store == "file":
        (settings.DATA_DIR / "versions" / "things").unlink()
    else:
        from django.core.cache import cache

        cache.clear()  # Redis restarted without its data
    assert version_get("things") not in (None, first)


def test_an_unreachable_store_gives_no_token(settings):
    """Then callers read the database: nothing cached is trusted."""
    unreachable = {
        "default": {
            "BACKEND": "core.cache.SharedPoolRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with override_settings(CACHES=unreachable):
        assert version_get("things") is None
        assert asyncio.run(versions_get("things")) == {"things": None}
