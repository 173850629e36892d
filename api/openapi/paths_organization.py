"""The Administration API (``/v1/organization/…``, admin keys only) in the OpenAPI document (see
:mod:`api.openapi`). Shapes follow OpenAI's Administration API; docs/admin-api.md has the
details and the differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.openapi.components import ADMIN_SECURITY, errors, json_answer, ref
from api.organization.serializers import MAX_EXPIRES_IN_SECONDS

TAG = {
    "name": "Administration",
    "description": "OpenAI's Administration API for the admin key's organization: projects, "
    "project keys and rate limits, users, invites, admin keys, usage and costs. Admin keys "
    "(`sk-adm-…`) only; ordinary keys are refused with 401.",
}

_STRING_OR_NULL = {"type": ["string", "null"]}


def _object(kind: str, *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", *required],
        "properties": {"object": {"const": kind}},
    }


def _list_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "data", "has_more"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref(item)},
            "first_id": _STRING_OR_NULL,
            "last_id": _STRING_OR_NULL,
            "has_more": {"type": "boolean"},
        },
    }


def _deleted(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "id", "deleted"],
        "properties": {
            "object": {"const": kind},
            "id": {"type": "string"},
            "deleted": {"const": True},
        },
    }


_EXPIRES = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_EXPIRES_IN_SECONDS}
SCHEMAS: dict[str, Any] = {
    "AdminProject": _object("organization.project", "id", "name", "status"),
    "AdminProjectApiKey": _object("organization.project.api_key", "id", "name"),
    "AdminRateLimit": _object("project.rate_limit", "id"),
    "AdminUser": _object("organization.user", "id", "role"),
    "AdminInvite": _object("organization.invite", "id", "email", "role"),
    "AdminApiKey": _object("organization.admin_api_key", "id", "name"),
    "AdminUsagePage": _object("page", "data", "has_more"),
    "AdminProjectList": _list_of("AdminProject"),
    "AdminProjectApiKeyList": _list_of("AdminProjectApiKey"),
    "AdminRateLimitList": _list_of("AdminRateLimit"),
    "AdminUserList": _list_of("AdminUser"),
    "AdminInviteList": _list_of("AdminInvite"),
    "AdminApiKeyList": _list_of("AdminApiKey"),
    "AdminProjectApiKeyDeleted": _deleted("organization.project.api_key.deleted"),
    "AdminUserDeleted": _deleted("organization.user.deleted"),
    "AdminInviteDeleted": _deleted("organization.invite.deleted"),
    "AdminApiKeyDeleted": _deleted("organization.admin_api_key.deleted"),
    "AdminProjectWrite": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}},
    },
    "AdminProjectApiKeyCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "scopes": {"type": ["array", "null"], "items": {"type": "string"}},
            "expires_in_seconds": _EXPIRES,
        },
    },
    "AdminProjectApiKeyUpdate": {
        "type": "object",
        "properties": {
            "scopes": {"type": ["array", "null"], "items": {"type": "string"}},
            "expires_in_seconds": _EXPIRES,
        },
    },
    "AdminRateLimitUpdate": {
        "type": "object",
        "description": "`max_requests_per_1_minute`, `max_tokens_per_1_minute`, "
        "`max_budget_tokens_per_month`, … (docs/admin-api.md).",
    },
    "AdminUserUpdate": {
        "type": "object",
        "required": ["role"],
        "properties": {"role": {"type": "string", "enum": ["owner", "reader"]}},
    },
    "AdminInviteCreate": {
        "type": "object",
        "required": ["email", "role"],
        "properties": {
            "email": {"type": "string"},
            "role": {"type": "string", "enum": ["owner", "reader"]},
        },
    },
    "AdminApiKeyCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}, "expires_in_seconds": _EXPIRES},
    },
}

_TAGS = ["Administration"]


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


_PAGE = [
    _query(
        "limit",
        {
            "description": "1–100 (default 20); empty means the default.",
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": 100}, {"const": ""}],
        },
    ),
    _query("after", {"type": "string", "description": "The last id of the previous page."}),
    _query(
        "order",
        {
            "type": "string",
            "description": "`desc` reverses the order (newest "
            "first); any other value is the default, oldest first.",
        },
    ),
]
_USAGE = [
    _query("start_time", {"type": "integer", "description": "Unix seconds."}, required=True),
    _query("end_time", {"type": "integer", "description": "Unix seconds; default now."}),
    _query("bucket_width", {"type": "string", "enum": ["1m", "1h", "1d"]}),
    _query(
        "limit",
        {
            "description": "Buckets per page; empty means the default.",
            "anyOf": [{"type": "integer", "minimum": 1}, {"const": ""}],
        },
    ),
    _query("page", {"type": "string", "pattern": "^page_[0-9]+$"}),
    *(
        {**_query(name, {"type": "array", "items": {"type": "string"}}), "explode": True}
        for name in ("group_by", "project_ids", "api_key_ids", "models")
    ),
]


def _op(
    operation_id: str,
    summary: str,
    answer: str,
    *,
    parameters: Sequence[dict[str, Any]] = (),
    body: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": _TAGS,
        "summary": summary,
        "security": ADMIN_SECURITY,
        "parameters": list(parameters),
        "responses": {"200": json_answer("The answer.", ref(answer)), **errors("409")},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    return operation


_P = _path("project_id")
_BASE = "/v1/organization"
PATHS: dict[str, Any] = {
    f"{_BASE}/projects": {
        "get": _op("adminListProjects", "List projects", "AdminProjectList",
                   parameters=[*_PAGE, _query("include_archived",
                                              {"type": "string",
                                               "description": "`true` or `1` includes them."})]),
        "post": _op("adminCreateProject", "Create a project", "AdminProject",
                    body="AdminProjectWrite"),
    },
    f"{_BASE}/projects/{{project_id}}": {
        "get": _op("adminGetProject", "Retrieve a project", "AdminProject", parameters=[_P]),
        "post": _op("adminUpdateProject", "Rename a project", "AdminProject", parameters=[_P],
                    body="AdminProjectWrite"),
    },
    f"{_BASE}/projects/{{project_id}}/archive": {
        "post": _op("adminArchiveProject", "Archive a project (revokes its keys)",
                    "AdminProject", parameters=[_P]),
    },
    f"{_BASE}/projects/{{project_id}}/api_keys": {
        "get": _op("adminListProjectApiKeys", "List a project's keys",
                   "AdminProjectApiKeyList", parameters=[_P, *_PAGE]),
        "post": _op("adminCreateProjectApiKey",
                    "Extension: create a project key (the secret in `value`, once)",
                    "AdminProjectApiKey", parameters=[_P], body="AdminProjectApiKeyCreate"),
    },
    f"{_BASE}/projects/{{project_id}}/api_keys/{{api_key_id}}": {
        "get": _op("adminGetProjectApiKey", "Retrieve a project key", "AdminProjectApiKey",
                   parameters=[_P, _path("api_key_id")]),
        "post": _op("adminUpdateProjectApiKey", "Change a project key's scopes or expiry",
                    "AdminProjectApiKey", parameters=[_P, _path("api_key_id")],
                    body="AdminProjectApiKeyUpdate"),
        "delete": _op("adminDeleteProjectApiKey", "Revoke a project key",
                      "AdminProjectApiKeyDeleted", parameters=[_P, _path("api_key_id")]),
    },
    f"{_BASE}/projects/{{project_id}}/rate_limits": {
        "get": _op("adminListRateLimits", "A project's rate limits", "AdminRateLimitList",
                   parameters=[_P, *_PAGE]),
    },
    f"{_BASE}/projects/{{project_id}}/rate_limits/{{rate_limit_id}}": {
        "post": _op("adminUpdateRateLimit", "Change a project's rate limits (`rl-all-models`)",
                    "AdminRateLimit", parameters=[_P, _path("rate_limit_id")],
                    body="AdminRateLimitUpdate"),
    },
    f"{_BASE}/users": {
        "get": _op("adminListUsers", "List the organization's users", "AdminUserList",
                   parameters=[*_PAGE, {**_query("emails", {"type": "array",
                                                            "items": {"type": "string"}}),
                                        "explode": True}]),
    },
    f"{_BASE}/users/{{user_id}}": {
        "get": _op("adminGetUser", "Retrieve a user", "AdminUser",
                   parameters=[_path("user_id")]),
        "post": _op("adminUpdateUser", "Change a user's role", "AdminUser",
                    parameters=[_path("user_id")], body="AdminUserUpdate"),
        "delete": _op("adminDeleteUser", "Remove a user from the organization",
                      "AdminUserDeleted", parameters=[_path("user_id")]),
    },
    f"{_BASE}/invites": {
        "get": _op("adminListInvites", "List invites", "AdminInviteList", parameters=_PAGE),
        "post": _op("adminCreateInvite", "Invite someone", "AdminInvite",
                    body="AdminInviteCreate"),
    },
    f"{_BASE}/invites/{{invite_id}}": {
        "get": _op("adminGetInvite", "Retrieve an invite", "AdminInvite",
                   parameters=[_path("invite_id")]),
        "delete": _op("adminDeleteInvite", "Delete an invite", "AdminInviteDeleted",
                      parameters=[_path("invite_id")]),
    },
    f"{_BASE}/admin_api_keys": {
        "get": _op("adminListAdminApiKeys", "List admin keys", "AdminApiKeyList",
                   parameters=_PAGE),
        "post": _op("adminCreateAdminApiKey", "Create an admin key (the secret in `value`, "
                    "once)", "AdminApiKey", body="AdminApiKeyCreate"),
    },
    f"{_BASE}/admin_api_keys/{{key_id}}": {
        "get": _op("adminGetAdminApiKey", "Retrieve an admin key", "AdminApiKey",
                   parameters=[_path("key_id")]),
        "delete": _op("adminDeleteAdminApiKey", "Revoke an admin key", "AdminApiKeyDeleted",
                      parameters=[_path("key_id")]),
    },
    f"{_BASE}/usage/completions": {
        "get": _op("adminUsageCompletions", "Token usage in time buckets", "AdminUsagePage",
                   parameters=_USAGE),
    },
    f"{_BASE}/costs": {
        "get": _op("adminCosts", "Costs in time buckets", "AdminUsagePage",
                   parameters=_USAGE),
    },
}  # fmt: skip
