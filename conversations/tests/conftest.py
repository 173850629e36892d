"""Fixtures: the ``scripted`` model served by a scripted engine, as in the Responses tests."""

from __future__ import annotations

from testsupport.fixtures import scripted_engine_fixture, scripted_model_fixture

scripted_model = scripted_model_fixture(context_length=4096, tool_call_parser="hermes")
engine = scripted_engine_fixture(text="Hello there, friend.")
