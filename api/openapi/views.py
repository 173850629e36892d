"""``/openapi.json`` and the rendered reference at ``/docs/``; both public (no key)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from api.openapi.document import openapi_document

_METHODS = ("get", "post", "delete")


async def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document(), json_dumps_params={"indent": 1})


def _schema_summary(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "oneOf" in schema:
        return " | ".join(_schema_summary(option) for option in schema["oneOf"])
    kind = schema.get("type", "")
    text = " | ".join(kind) if isinstance(kind, list) else str(kind)
    if "enum" in schema:
        text += " (" + ", ".join(str(value) for value in schema["enum"] if value is not None) + ")"
    return text


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    schemas = document["components"]["schemas"]
    operations = []
    for path, item in document["paths"].items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None or "Azure v1 form" in operation.get("tags", []):
                continue
            body_fields = []
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                name = body["schema"]["$ref"].rsplit("/", 1)[-1]
                schema = schemas[name]
                required = set(schema.get("required", []))
                for field, field_schema in schema.get("properties", {}).items():
                    body_fields.append(
                        {
                            "name": field,
                            "type": _schema_summary(field_schema),
                            "required": field in required,
                            "description": field_schema.get("description", ""),
                        }
                    )
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "anchor": operation["operationId"],
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "public": operation.get("security") == [],
                    "parameters": [
                        {
                            "name": parameter["name"],
                            "where": parameter["in"],
                            "type": _schema_summary(parameter.get("schema")),
                            "description": parameter.get("description", ""),
                        }
                        for parameter in operation.get("parameters", [])
                    ],
                    "body_fields": body_fields,
                    "responses": [
                        {
                            "status": status,
                            "description": answer.get("description")
                            or document["components"]["responses"][
                                answer["$ref"].rsplit("/", 1)[-1]
                            ]["description"],
                        }
                        for status, answer in operation["responses"].items()
                    ],
                }
            )
    return operations


def docs_page(request: HttpRequest) -> HttpResponse:
    """The reference rendered on the server from the same document: no JavaScript, nothing
    fetched from elsewhere (the platform often runs where the internet is not reachable)."""
    document = openapi_document()
    return render(
        request,
        "api/docs.html",
        {"info": document["info"], "tags": document["tags"], "operations": _operations(document)},
    )
