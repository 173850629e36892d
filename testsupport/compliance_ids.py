"""The 37 feature IDs (C1…T1) that ``@pytest.mark.compliance("ID")`` tests cite, with what this
branch serves of each. ``make compliance`` prints ID → tests → pass/fail from them and writes the
generated table of docs/compatibility.md; ``tests/test_compliance_coverage.py`` fails when an ID
that is served has no test, or when an ID marked "not supported yet" gets one (then its status
here must change too).
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED = "supported"
PARTIAL = "partial"
NOT_YET = "not supported yet"


@dataclass(frozen=True)
class Feature:
    title: str
    status: str = SUPPORTED
    note: str = ""


FEATURES: dict[str, Feature] = {
    "C1": Feature("POST /v1/responses/{id}/tool_outputs"),
    "C2": Feature(
        "response.tool_call.delta (legacy dialect)",
        SUPPORTED,
        "Legacy dialect only (X-Responses-Dialect: legacy or the organization's default); the "
        "openai dialect sends response.function_call_arguments.delta.",
    ),
    "C3": Feature("Stateful response sessions in the database"),
    "C4": Feature("response.error (legacy name); error event then response.failed"),
    "H1": Feature("prompt_cache_key: sticky replica routing, per-organization cache salt"),
    "H2": Feature("Reasoning events"),
    "H3": Feature("Reasoning summaries (generated)"),
    "H4": Feature("Encrypted reasoning (reasoning.encrypted_content), response.additional_context"),
    "H5": Feature(
        "response.rate_limits.updated",
        SUPPORTED,
        "On opt-in (X-Rate-Limit-Events: true) in the openai and open-responses dialects; "
        "always in the legacy dialect.",
    ),
    "M1": Feature("Azure route forms and api-key header"),
    "M2": Feature("OpenAI error types and codes"),
    "M3": Feature("Retry-After on 429 and 503"),
    "M4": Feature("Every include value"),
    "M5": Feature("OpenAI headers on every authenticated answer"),
    "M6": Feature("store (default true, store=false never retrievable)"),
    "L1": Feature("Every SSE event validates against the SDK's types"),
    "L2": Feature(
        "Streaming performance",
        PARTIAL,
        "Measured by the benchmark harness (bench/streams.py, docs/performance.md); the test "
        "checks that the harness runs and reports, never timings.",
    ),
    "L3": Feature("Compatibility mode (dialects openai, open-responses, legacy)"),
    "L4": Feature("Keep-alive comment frames"),
    "L5": Feature(
        "[DONE] after the terminal event",
        SUPPORTED,
        "Sent by the open-responses and legacy dialects, and by openai with "
        "X-Responses-Done: true; never otherwise.",
    ),
    "L6": Feature("sequence_number from 0, identical on replay and resume"),
    "L7": Feature("One request id everywhere; consistent object ids"),
    "L8": Feature("service_tier accepted, mapped, allowed per organization, echoed"),
    "E1": Feature("A well-formed stream whatever the engine does"),
    "E2": Feature("Tool-output deadlines expire on time"),
    "E3": Feature("Parallel function calls; concurrent submissions"),
    "E4": Feature("Bodies over 1 MB up to a limit, then 413"),
    "E5": Feature("Client disconnect aborts the engine, stores incomplete"),
    "E6": Feature("Duplicate tool-output submission 409; Idempotency-Key replay"),
    "E7": Feature("Invalid JSON in tool arguments"),
    "E8": Feature("Long sessions stay bounded"),
    "D1": Feature("API reference (docs/api-reference.md, /openapi.json, /docs/)"),
    "D2": Feature("Migration guide (docs/migration.md)"),
    "D3": Feature("Compatibility matrix (docs/compatibility.md)"),
    "D4": Feature("Examples that run (examples/)"),
    "D5": Feature("Troubleshooting guide from the real error codes"),
    "T1": Feature("Compliance suite (pytest -m compliance, make compliance)"),
}

# Compliance marks may also name an endpoint of the wire reference (responses-api.md: R7
# compact, R8 WebSocket mode) or a whole feature that has no ID (conversations, prompt
# templates); these are not rows of the 37-ID table, but each must have a test.
ENDPOINTS: dict[str, str] = {
    "R7": "POST /v1/responses/compact",
    "R8": "WebSocket mode (wss://…/v1/responses)",
    "conversations": "Conversations API (/v1/conversations…)",
    "prompt": "Prompt templates (prompt: {id, version, variables})",
}
KNOWN_IDS = frozenset(FEATURES) | frozenset(ENDPOINTS)
