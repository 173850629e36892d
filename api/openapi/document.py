"""Assemble the OpenAPI document from the group modules (see :mod:`api.openapi`)."""

from __future__ import annotations

import copy
import functools
from importlib import import_module
from typing import Any

from django.conf import settings

from api.openapi import GROUP_MODULES
from api.openapi.components import (
    ERROR_RESPONSES,
    ERROR_SCHEMA,
    REQUEST_HEADER_PARAMETERS,
    SECURITY,
    SECURITY_SCHEMES,
    error_component,
)

OPENAPI_VERSION = "3.1.0"
DOCUMENT_VERSION = "1.0.0"
AZURE_PREFIX = "/openai/v1/"

DESCRIPTION = """\
A self-hosted, multi-tenant implementation of OpenAI's Responses API in front of vLLM engines.
Point the official `openai` SDK's `base_url` at `https://<host>/v1` and use a platform key
(`sk-rp-…`). Every path under `/v1/` is served under `/openai/v1/` too (Azure's v1 form, with the
`api-key` header). Errors always use OpenAI's envelope `{"error": {message, type, param, code}}`.
Guides: docs/api-reference.md, docs/migration.md, docs/compatibility.md, docs/troubleshooting.md.
"""


def _group(module_path: str):
    return import_module(module_path)


def _with_common_parameters(path_item: dict[str, Any]) -> dict[str, Any]:
    """API operations (not the service probes) take the common request headers."""
    item = copy.deepcopy(path_item)
    for method, operation in item.items():
        if method not in ("get", "post", "delete") or operation.get("security") == []:
            continue
        operation["parameters"] = [*operation.get("parameters", []), *REQUEST_HEADER_PARAMETERS]
    return item


def _azure_alias(path_item: dict[str, Any]) -> dict[str, Any]:
    item = copy.deepcopy(path_item)
    for method, operation in item.items():
        if method in ("get", "post", "delete"):
            operation["operationId"] += "Azure"
            operation["tags"] = ["Azure v1 form"]
            operation["summary"] = f"{operation['summary']} (Azure v1 form)"
    return item


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document. Built once per process: it depends on code only."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    tags: list[dict[str, str]] = []
    for module_path in GROUP_MODULES:
        group = _group(module_path)
        tags.append(group.TAG)
        schemas.update(getattr(group, "SCHEMAS", {}))
        for path, item in group.PATHS.items():
            if path in paths:
                raise ValueError(f"{module_path} documents {path} a second time")
            paths[path] = _with_common_parameters(item)
    for path in [p for p in paths if p.startswith("/v1/")]:
        paths[AZURE_PREFIX + path.removeprefix("/v1/")] = _azure_alias(paths[path])
    tags.append(
        {
            "name": "Azure v1 form",
            "description": "Every `/v1/` path again under `/openai/v1/` (Azure OpenAI's v1 "
            "route form); authenticate with the `api-key` header or Bearer.",
        }
    )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Responses platform API",
            "version": DOCUMENT_VERSION,
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "security": SECURITY,
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": schemas,
            "responses": {
                f"Error{status}": error_component(status) for status in ERROR_RESPONSES
            },
        },
        "x-openai-version": settings.OPENAI_VERSION_HEADER,
    }
