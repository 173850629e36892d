"""Fixtures for the Responses tests: the ``scripted`` model served by a scripted engine, and
reasoning encryption keys."""

from __future__ import annotations

import pytest

from testsupport.fixtures import scripted_engine_fixture, scripted_model_fixture

scripted_model = scripted_model_fixture(context_length=4096, tool_call_parser="hermes")
engine = scripted_engine_fixture(text="Hello there, friend.")


@pytest.fixture
def reasoning_keys(settings):
    """Two Fernet keys, newest first (H4); tests that rotate change the list themselves."""
    from cryptography.fernet import Fernet

    keys = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
    settings.REASONING_ENCRYPTION_KEYS = keys
    return keys
