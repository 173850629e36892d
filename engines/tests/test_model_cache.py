"""``model_get`` from the per-process cache (engines.selectors): no query while nothing changed,
and every change of a model or of its grants seen by the next lookup."""

from __future__ import annotations

import pytest

from engines.models import ServedModel
from engines.selectors import model_get

pytestmark = pytest.mark.django_db


@pytest.fixture
def private(cast):
    """A model only acme may use, looked up once (from the database)."""
    model = ServedModel.objects.create(name="private", upstream_model="p", available_to_all=False)
    model.organizations.add(cast.alice.organization)
    assert model_get(organization=cast.alice.organization, name="private") is not None
    return model


def test_a_model_in_use_is_found_without_a_query(private, cast, django_assert_num_queries):
    with django_assert_num_queries(0):
        found = model_get(organization=cast.alice.organization, name="private")
    assert found == private and found is not private
    assert model_get(organization=cast.charlie.organization, name="private") is None


def test_removing_the_grant_is_seen_at_once(private, cast):
    private.organizations.remove(cast.alice.organization)
    assert model_get(organization=cast.alice.organization, name="private") is None


def test_disabling_or_changing_the_model_is_seen_at_once(private, cast):
    ServedModel.objects.filter(pk=private.pk).update(context_length=9999)
    assert model_get(organization=cast.alice.organization, name="private").context_length == 9999
    private.refresh_from_db()
    private.enabled = False
    private.save()
    assert model_get(organization=cast.alice.organization, name="private") is None


def test_deleting_the_model_is_seen_at_once(private, cast):
    private.delete()
    assert model_get(organization=cast.alice.organization, name="private") is None
