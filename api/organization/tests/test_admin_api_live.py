"""The SDK's admin client over a real socket against daphne: nothing in the in-process tests'
transport hides a difference on the wire."""

from __future__ import annotations

import openai
import pytest

from tenants.models import ApiKey
from tenants.services.api_keys import api_key_issue


@pytest.mark.django_db(transaction=True)
def test_sdk_admin_client_against_a_live_server(live_daphne, transactional_cast):
    issued = api_key_issue(
        organization=transactional_cast.alice.organization, name="live", kind=ApiKey.Kind.ADMIN
    )
    client = openai.OpenAI(
        admin_api_key=issued.secret,
        base_url=f"{live_daphne}/v1",
        max_retries=0,
        _strict_response_validation=True,
    )
    project = client.admin.organization.projects.create(name="Live")
    assert project.name in [p.name for p in client.admin.organization.projects.list()]
    created = client.admin.organization.admin_api_keys.create(name="second")
    assert created.value.startswith("sk-adm-")
    page = client.admin.organization.usage.completions(start_time=0, bucket_width="1d", limit=1)
    assert page.object == "page" and len(page.data) == 1
    # The same admin key is refused by the inference API.
    inference = openai.OpenAI(api_key=issued.secret, base_url=f"{live_daphne}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        inference.models.list()
