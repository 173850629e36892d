"""Pieces of the OpenAPI document shared by every endpoint group: the error envelope, the
standard error responses, the headers of every API answer and the security schemes."""

from __future__ import annotations

from typing import Any

from responses.services.usage import RATE_LIMIT_EVENTS_HEADER

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


ERROR_SCHEMA: Schema = {
    "type": "object",
    "description": "OpenAI's error envelope. Every failure of the API answers with it.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {
                    "type": "string",
                    "description": "`invalid_request_error`, `server_error`, "
                    "`insufficient_quota`, `rate_limit_exceeded`, …",
                },
                "param": {
                    "type": ["string", "null"],
                    "description": "The dotted path of the offending parameter, when one is.",
                },
                "code": {
                    "type": ["string", "null"],
                    "description": "A machine-readable code; every code is listed in "
                    "docs/troubleshooting.md.",
                },
            },
        }
    },
}

_INT_STRING = {"type": "string", "pattern": "^[0-9]+$"}

# Headers on every answer under /v1/ and /openai/ (the gateway middleware adds them).
COMMON_RESPONSE_HEADERS: dict[str, Schema] = {
    "x-request-id": {
        "description": "The request id: the client's well-formed `X-Client-Request-Id` / "
        "`X-Request-Id`, else a generated `req_…`. Also in logs, error messages and the "
        "engine request.",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    },
    "openai-version": {
        "description": "Always `2020-10-01`, like OpenAI.",
        "required": True,
        "schema": {"type": "string"},
    },
    "openai-processing-ms": {
        "description": "Milliseconds the platform spent before the first byte of the answer.",
        "required": True,
        "schema": _INT_STRING,
    },
    "openai-organization": {
        "description": "The caller's organization id (authenticated answers).",
        "schema": {"type": "string"},
    },
    "openai-project": {
        "description": "The project id when the key or the `OpenAI-Project` header names one.",
        "schema": {"type": "string"},
    },
}
for _kind in ("requests", "tokens"):
    COMMON_RESPONSE_HEADERS[f"x-ratelimit-limit-{_kind}"] = {
        "description": f"The tightest {_kind} limit that applies to the caller (absent when "
        "none does).",
        "schema": _INT_STRING,
    }
    COMMON_RESPONSE_HEADERS[f"x-ratelimit-remaining-{_kind}"] = {
        "description": f"What remains of that {_kind} limit.",
        "schema": _INT_STRING,
    }
    COMMON_RESPONSE_HEADERS[f"x-ratelimit-reset-{_kind}"] = {
        "description": "When it resets, as a Go duration (`12ms`, `1.5s`, `6m0s`).",
        "schema": {"type": "string"},
    }

RETRY_HEADERS: dict[str, Schema] = {
    "retry-after": {
        "description": "Whole seconds to wait before retrying (429 and 503).",
        "schema": _INT_STRING,
    },
    "retry-after-ms": {
        "description": "The same in milliseconds (429).",
        "schema": _INT_STRING,
    },
}

# Standard error answers. Every operation lists the ones that apply to every API request; the
# operation adds its own (404 of an unknown id, 409, 410, …).
ERROR_RESPONSES: dict[str, tuple[str, dict[str, Schema]]] = {
    "400": ("Invalid request: a malformed body or an invalid parameter (`param` names it).", {}),
    "401": (
        "Missing or wrong API key, or `OpenAI-Organization` / `OpenAI-Project` headers that do "
        "not match the key.",
        {},
    ),
    "403": ("The key's scope does not allow this endpoint or method.", {}),
    "404": ("Unknown route, or an object that does not exist for the caller's organization.", {}),
    "405": ("The method is not allowed on this path.", {}),
    "409": ("Conflict with the object's state (already submitted, not cancellable, …).", {}),
    "410": ("The object expired (a tool-output deadline passed).", {}),
    "413": ("The body is larger than `MAX_REQUEST_BODY_BYTES`.", {}),
    "415": ("The body is not JSON.", {}),
    "422": ("An `Idempotency-Key` reused with another body (`idempotency_key_reused`).", {}),
    "429": ("A rate limit or budget of the caller's organization, project or key.", RETRY_HEADERS),
    "500": ("An unexpected error; the message names the request id.", {}),
    "503": ("The database or every engine replica is unreachable; retry.", RETRY_HEADERS),
    "504": ("The engine stopped answering (`engine_timeout`).", {}),
}
STANDARD_ERRORS = ("400", "401", "403", "404", "405", "413", "415", "429", "500", "503", "504")


def error_response(status: str) -> Schema:
    return {"$ref": f"#/components/responses/Error{status}"}


def error_component(status: str) -> Schema:
    description, extra_headers = ERROR_RESPONSES[status]
    return {
        "description": description,
        "headers": {**COMMON_RESPONSE_HEADERS, **extra_headers},
        "content": {"application/json": {"schema": ref("Error")}},
    }


def errors(*extra: str) -> dict[str, Schema]:
    statuses = sorted(set(STANDARD_ERRORS) | set(extra))
    return {status: error_response(status) for status in statuses}


def json_answer(description: str, schema: Schema) -> Schema:
    return {
        "description": description,
        "headers": COMMON_RESPONSE_HEADERS,
        "content": {"application/json": {"schema": schema}},
    }


DIALECT_HEADER_PARAMETERS: list[Schema] = [
    {
        "name": "X-Responses-Dialect",
        "in": "header",
        "required": False,
        "description": "The stream's event vocabulary: `openai` (default), `open-responses` "
        "or `legacy` (docs/dialects.md); else the organization's default. Another value → "
        "400 `invalid_value`. JSON answers are the same in every dialect.",
        "schema": {"type": "string", "enum": ["openai", "open-responses", "legacy"]},
    },
    {
        "name": "X-Responses-Done",
        "in": "header",
        "required": False,
        "description": "`true` (or `1`, `yes`): `data: [DONE]` after the last event in the "
        "`openai` dialect too; any other value is off.",
        "schema": {"type": "string"},
    },
]

# Azure's dated and deployment forms (api.azure): `api-version` is required there, optional
# under /openai/v1/.
AZURE_VERSION_PATTERN = r"^(preview|latest|v1|[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?)$"


def api_version_parameter(*, required: bool) -> Schema:
    return {
        "name": "api-version",
        "in": "query",
        "required": required,
        "description": "Azure's API version: `preview`, `latest`, `v1`, or a dated version "
        "from `2025-03-01-preview` on. Missing (where required), older or unknown → 400 "
        "`BadRequest`.",
        "schema": {"type": "string", "pattern": AZURE_VERSION_PATTERN},
    }


AZURE_RESPONSE_HEADERS: dict[str, Schema] = {
    "apim-request-id": {
        "description": "Azure's correlation id (the request id).",
        "schema": {"type": "string"},
    },
    "x-ms-client-request-id": {
        "description": "The client's `x-ms-client-request-id`, echoed.",
        "schema": {"type": "string"},
    },
}

REQUEST_HEADER_PARAMETERS: list[Schema] = [
    {
        "name": "X-Client-Request-Id",
        "in": "header",
        "required": False,
        "description": "Your id for the request (`[A-Za-z0-9_.:-]{1,128}`); echoed as "
        "`x-request-id`. `X-Request-Id` is accepted too.",
        "schema": {"type": "string"},
    },
    {
        "name": "OpenAI-Organization",
        "in": "header",
        "required": False,
        "description": "Must name the key's organization (id or slug) when sent; 401 "
        "`mismatched_organization` otherwise.",
        "schema": {"type": "string"},
    },
    {
        "name": "OpenAI-Project",
        "in": "header",
        "required": False,
        "description": "A project of the key's organization (a key bound to a project must "
        "name that one); 401 `mismatched_project` otherwise.",
        "schema": {"type": "string"},
    },
    {
        "name": RATE_LIMIT_EVENTS_HEADER,
        "in": "header",
        "required": False,
        "description": "Extension: `true` (or `1`, `yes`) adds `response.rate_limits.updated` "
        "events to the stream (after admission and after settlement); any other value is off.",
        "schema": {"type": "string"},
    },
]

SECURITY_SCHEMES: dict[str, Schema] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer sk-rp-…` (what the `openai` SDK sends).",
    },
    "azureApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "api-key",
        "description": "Azure's header form, accepted on every API route.",
    },
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer sk-adm-…`: an admin key, accepted only under "
        "`/v1/organization/` (and ordinary keys are refused there).",
    },
    "adminKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "api-key",
        "description": "The same admin key in the `api-key` header.",
    },
}
ADMIN_SECURITY: list[Schema] = [{"adminKey": []}, {"adminKeyHeader": []}]
SECURITY: list[Schema] = [{"bearer": []}, {"azureApiKey": []}]
