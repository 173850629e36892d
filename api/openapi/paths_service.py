"""Service endpoints: probes and the API description itself (no key needed)."""

from __future__ import annotations

TAG = {"name": "Service", "description": "Probes for load balancers and this description."}

_PROBE_CHECK = {
    "type": "object",
    "required": ["ok", "ms"],
    "properties": {"ok": {"type": "boolean"}, "ms": {"type": "number"}},
}

SCHEMAS = {
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "checks": {
                "type": "object",
                "description": "`database`, `engines` and (when Redis is configured) `redis`.",
                "additionalProperties": _PROBE_CHECK,
            },
        },
    },
}

_PUBLIC: dict[str, list] = {"security": []}

PATHS = {
    "/healthz": {
        "get": {
            **_PUBLIC,
            "operationId": "healthz",
            "tags": ["Service"],
            "summary": "Liveness: the process serves requests",
            "responses": {
                "200": {
                    "description": "Alive.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"const": "ok"}},
                            }
                        }
                    },
                }
            },
        }
    },
    "/readyz": {
        "get": {
            **_PUBLIC,
            "operationId": "readyz",
            "tags": ["Service"],
            "summary": "Readiness: database, Redis and a healthy replica per model",
            "responses": {
                status: {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
                    },
                }
                for status, description in (
                    ("200", "Ready: every check passed."),
                    ("503", "Not ready: at least one check failed (see `checks`)."),
                )
            },
        }
    },
    "/openapi.json": {
        "get": {
            **_PUBLIC,
            "operationId": "openapiDocument",
            "tags": ["Service"],
            "summary": "This OpenAPI 3.1 document",
            "responses": {
                "200": {
                    "description": "The document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}
