"""A base for the API's async views (the Responses endpoints stream, so they are async Django
views rather than DRF's sync views: docs/architecture.md, "Two HTTP stacks").

Subclasses implement ``async def get/post/delete(self, request: ApiRequest, **kwargs)``. The base
dispatches by method (405 in the envelope otherwise), checks the key's scope for the view's
``endpoint_group`` (reads for GET, writes for everything else), and turns :class:`ApiError` into
the envelope (a quota refusal also leaves its rate-limit state for the answer's headers).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.decorators import classonlymethod
from django.views import View

from api.permissions import require_scope
from api.request import ApiRequest
from core.errors import ApiError, MethodNotAllowed, error_response
from core.json_body import parse_json_object
from quotas.services.admission import QuotaRefused

READ_METHODS = ("GET", "HEAD", "OPTIONS")


class AsyncApiView(View):
    endpoint_group: str | None = None
    http_method_names = ["get", "post", "delete"]

    @classonlymethod
    def as_view(cls, **initkwargs):
        view = super().as_view(**initkwargs)
        # API requests authenticate with keys, never cookies: CSRF does not apply.
        # The flag Django's CSRF middleware reads; the stubs type the view as a bare Callable.
        view.csrf_exempt = True  # type: ignore[attr-defined]
        return view

    # Django runs an async dispatch for a view whose handlers are async (View.view_is_async);
    # the stubs know only the sync one.
    async def dispatch(  # type: ignore[override]
        self, request: ApiRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        handler = getattr(self, request.method.lower(), None)
        if request.method.lower() not in self.http_method_names or handler is None:
            return error_response(
                MethodNotAllowed(f"Method {request.method} is not allowed for {request.path}.")
            )
        try:
            if self.endpoint_group is not None:
                require_scope(
                    request.principal,
                    group=self.endpoint_group,
                    write=request.method not in READ_METHODS,
                )
            return await handler(request, *args, **kwargs)
        except QuotaRefused as refused:
            request.rate_limit = refused.rate_limit
            return error_response(refused)
        except ApiError as error:
            return error_response(error)

    def http_method_not_allowed(self, request, *args, **kwargs):  # pragma: no cover - dispatch
        return error_response(MethodNotAllowed(f"Method {request.method} is not allowed."))


def json_body(request: HttpRequest) -> dict[str, Any]:
    return parse_json_object(request.body)


def json_response(data: Any, *, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, safe=not isinstance(data, list))
