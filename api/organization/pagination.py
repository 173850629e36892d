"""OpenAI's cursor lists: ``?limit=&after=<id>`` → ``{"object": "list", "data", "first_id",
"last_id", "has_more"}``. The cursor is the public id of the last item seen; the order is
(created_at, pk), ``?order=desc`` reverses it."""

from __future__ import annotations

from django.db.models import Q
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from core.errors import InvalidRequest


def int_param(request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid '{name}': expected an integer.", param=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"Invalid '{name}': must be between {low} and {high}.", param=name)
    return value


class CursorPagination(BasePagination):
    default_limit = 20
    max_limit = 100
    id_field = "public_id"

    def paginate_queryset(self, queryset, request, view=None):
        limit = int_param(request, "limit", self.default_limit, low=1, high=self.max_limit)
        after = request.query_params.get("after")
        descending = request.query_params.get("order") == "desc"
        queryset = queryset.order_by(
            *(("-created_at", "-pk") if descending else ("created_at", "pk"))
        )
        if after:
            anchor = queryset.filter(**self.anchor_lookup(after)).first()
            if anchor is None:
                raise InvalidRequest(f"No such object: '{after}'.", param="after")
            later = "lt" if descending else "gt"
            queryset = queryset.filter(
                Q(**{f"created_at__{later}": anchor.created_at})
                | Q(created_at=anchor.created_at, **{f"pk__{later}": anchor.pk})
            )
        page = list(queryset[: limit + 1])
        self.has_more = len(page) > limit
        return page[:limit]

    def anchor_lookup(self, after: str) -> dict:
        return {self.id_field: after}

    def get_paginated_response(self, data):
        return Response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": self.has_more,
            }
        )
