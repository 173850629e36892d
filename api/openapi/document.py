"""Assemble the OpenAPI document from the group modules (see :mod:`api.openapi`)."""

from __future__ import annotations

import copy
import functools
from importlib import import_module
from typing import Any

from django.conf import settings

from api.openapi import GROUP_MODULES
from api.openapi.components import (
    AZURE_RESPONSE_HEADERS,
    ERROR_RESPONSES,
    ERROR_SCHEMA,
    REQUEST_HEADER_PARAMETERS,
    SECURITY,
    SECURITY_SCHEMES,
    api_version_parameter,
    error_component,
)

OPENAPI_VERSION = "3.1.0"
DOCUMENT_VERSION = "1.0.0"
AZURE_PREFIX = "/openai/v1/"
# Azure's route forms (api.azure): (prefix, tag, operationId suffix, api-version required).
AZURE_FORMS = (
    (AZURE_PREFIX, "Azure v1 form", "Azure", False),
    ("/openai/", "Azure dated form", "AzureDated", True),
    ("/openai/deployments/{deployment}/", "Azure deployment form", "AzureDeployment", True),
)
# The Administration API is served under /v1/ only.
NOT_UNDER_AZURE = "/v1/organization/"
_DEPLOYMENT = {
    "name": "deployment",
    "in": "path",
    "required": True,
    "description": "An API deployment of your organization; it names the model (a `model` in "
    "the body is replaced). Unknown → 404 `DeploymentNotFound`.",
    "schema": {"type": "string"},
}

DESCRIPTION = """\
A self-hosted, multi-tenant implementation of OpenAI's Responses API in front of vLLM engines.
Point the official `openai` SDK's `base_url` at `https://<host>/v1` and use a platform key
(`sk-rp-…`). Every path under `/v1/` is served under `/openai/v1/` too (Azure's v1 form, with the
`api-key` header), and under Azure's dated forms `/openai/…?api-version=…` and
`/openai/deployments/{deployment}/…?api-version=…`. The Administration API (`/v1/organization/`)
takes admin keys only. Errors always use OpenAI's envelope `{"error": {message, type, param, code}}`.
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


def _azure_alias(
    path_item: dict[str, Any], *, tag: str, suffix: str, version_required: bool, deployment: bool
) -> dict[str, Any]:
    item = copy.deepcopy(path_item)
    for method, operation in item.items():
        if method in ("get", "post", "delete"):
            operation["operationId"] += suffix
            operation["tags"] = [tag]
            operation["summary"] = f"{operation['summary']} ({tag})"
            operation["parameters"] = [
                *([_DEPLOYMENT] if deployment else []),
                *operation.get("parameters", []),
                api_version_parameter(required=version_required),
            ]
            for answer in operation["responses"].values():
                if "$ref" not in answer:
                    answer["headers"] = {**answer.get("headers", {}), **AZURE_RESPONSE_HEADERS}
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
    served = [p for p in paths if p.startswith("/v1/") and not p.startswith(NOT_UNDER_AZURE)]
    for prefix, tag, suffix, required in AZURE_FORMS:
        for path in served:
            paths[prefix + path.removeprefix("/v1/")] = _azure_alias(
                paths[path],
                tag=tag,
                suffix=suffix,
                version_required=required,
                deployment="{deployment}" in prefix,
            )
    tags += [
        {
            "name": "Azure v1 form",
            "description": "Every API path again under `/openai/v1/` (Azure OpenAI's v1 route "
            "form, `api-version` optional); authenticate with the `api-key` header or Bearer.",
        },
        {
            "name": "Azure dated form",
            "description": "Every API path under `/openai/` with a required `api-version` "
            "query parameter (`2025-03-01-preview` or later, `preview`, `latest`).",
        },
        {
            "name": "Azure deployment form",
            "description": "Every API path under `/openai/deployments/{deployment}/` with a "
            "required `api-version`; the deployment names the model.",
        },
    ]
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
            "responses": {f"Error{status}": error_component(status) for status in ERROR_RESPONSES},
        },
        "x-openai-version": settings.OPENAI_VERSION_HEADER,
    }
