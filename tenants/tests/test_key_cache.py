"""The per-process key cache (tenants.services.api_keys): a key in use costs no query, and no
change of a key, its organization or its project outlives the write that made it — in this
process or in another one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from tenants.models import ApiKey, Organization, Project
from tenants.services.api_keys import api_key_find_active, api_key_mark_used, api_key_revoke
from tenants.services.organizations import project_archive
from testsupport.live_server import DaphneProcess


@pytest.fixture
def warm(cast, django_assert_num_queries):
    """alice's key read once (from the database), then served from this process's cache."""
    assert api_key_find_active(secret=cast.alice.secret) is not None
    with django_assert_num_queries(0):
        assert api_key_find_active(secret=cast.alice.secret) is not None
    return cast


def _revoke_with_the_service(cast):
    api_key_revoke(api_key=cast.alice.api_key)


def _revoke_with_a_bulk_update(cast):
    ApiKey.objects.filter(organization=cast.alice.organization).update(revoked_at=timezone.now())


def _revoke_through_the_organization(cast):
    cast.alice.organization.api_keys.update(revoked_at=timezone.now())


def _expire_with_save(cast):
    key = ApiKey.objects.get(pk=cast.alice.api_key.pk)
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()


def _delete_the_key(cast):
    ApiKey.objects.filter(pk=cast.alice.api_key.pk).delete()


def _delete_the_organization(cast):
    Organization.objects.get(pk=cast.alice.organization.pk).delete()


@pytest.mark.parametrize(
    "write",
    [
        _revoke_with_the_service,
        _revoke_with_a_bulk_update,
        _revoke_through_the_organization,
        _expire_with_save,
        _delete_the_key,
        _delete_the_organization,
    ],
)
def test_a_key_stops_working_on_the_request_after_the_write(warm, write):
    write(warm)
    assert api_key_find_active(secret=warm.alice.secret) is None


def test_a_key_of_an_archived_project_stops_working(cast):
    assert api_key_find_active(secret=cast.bob.secret) is not None
    project_archive(project=Project.objects.get(pk=cast.bob.api_key.project_id))
    assert api_key_find_active(secret=cast.bob.secret) is None


def test_scope_and_organization_changes_are_seen_at_once(warm):
    ApiKey.objects.filter(pk=warm.alice.api_key.pk).update(scope=ApiKey.Scope.READ_ONLY)
    assert api_key_find_active(secret=warm.alice.secret).scope == ApiKey.Scope.READ_ONLY

    organization = Organization.objects.get(pk=warm.alice.organization.pk)
    organization.allowed_service_tiers = ["default"]
    organization.save()
    key = api_key_find_active(secret=warm.alice.secret)
    assert key.organization.allowed_service_tiers == ["default"]

    Project.objects.filter(pk=warm.bob.api_key.project_id).update(name="Renamed")
    assert api_key_find_active(secret=warm.bob.secret).project.name == "Renamed"


def test_recording_last_use_keeps_the_cache(warm, django_assert_num_queries):
    api_key_mark_used(api_key=warm.alice.api_key)
    assert ApiKey.objects.get(pk=warm.alice.api_key.pk).last_used_at is not None
    with django_assert_num_queries(0):
        assert api_key_find_active(secret=warm.alice.secret) is not None


def test_each_lookup_gets_instances_of_its_own(warm):
    first = api_key_find_active(secret=warm.alice.secret)
    first.permissions["responses"] = "none"
    first.organization.allowed_service_tiers.append("nonsense")
    second = api_key_find_active(secret=warm.alice.secret)
    assert second.permissions == {}
    assert "nonsense" not in second.organization.allowed_service_tiers
    assert second.organization is not first.organization


@override_settings(VERSIONED_CACHE_SECONDS=0)
def test_the_cache_can_be_turned_off(cast, django_assert_num_queries):
    assert api_key_find_active(secret=cast.alice.secret) is not None
    with django_assert_num_queries(1):
        assert api_key_find_active(secret=cast.alice.secret) is not None


def test_a_reader_during_the_revoking_transaction_cannot_keep_the_old_row(transactional_cast):
    """Between the write and its commit, another process may read the version bumped by the
    write and then the still-committed row: the bump at commit makes that entry stale too."""
    secret = transactional_cast.alice.secret

    def read_elsewhere():  # its own thread, so its own connection: sees only committed rows
        found = api_key_find_active(secret=secret)
        connections.close_all()
        return found

    with transaction.atomic():
        api_key_revoke(api_key=transactional_cast.alice.api_key)
        with ThreadPoolExecutor(max_workers=1) as other:
            assert other.submit(read_elsewhere).result() is not None  # the old row, cached
    assert api_key_find_active(secret=secret) is None


def _models_status(base_url: str, secret: str) -> int:
    return httpx.get(
        f"{base_url}/v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    ).status_code


def test_a_key_revoked_here_fails_on_its_next_request_in_another_process(
    live_daphne, transactional_cast
):
    """daphne (another process, its key cache warm) sees the revocation made here at once."""
    secret = transactional_cast.alice.secret
    assert _models_status(live_daphne, secret) == 200
    assert _models_status(live_daphne, secret) == 200
    api_key_revoke(api_key=transactional_cast.alice.api_key)
    assert _models_status(live_daphne, secret) == 401


def test_without_redis_processes_share_the_version_through_the_data_directory(
    transactional_cast, settings
):
    """The embedded default's shape (no Redis: an in-process cache each): the version lives in
    a file of the shared data directory, so a revocation made here reaches the other process."""
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    daphne = DaphneProcess(env={"REDIS_URL": "", "PLATFORM_DATA_DIR": str(settings.DATA_DIR)})
    daphne.start()
    try:
        secret = transactional_cast.charlie.secret
        assert _models_status(daphne.base_url, secret) == 200
        assert _models_status(daphne.base_url, secret) == 200
        with override_settings(CACHES=locmem):
            api_key_revoke(api_key=transactional_cast.charlie.api_key)
        assert _models_status(daphne.base_url, secret) == 401
    finally:
        daphne.stop()
