import functools

from django.contrib import admin
from django.urls import include, path, re_path

from api.azure import azure_route
from api.health import healthz, readyz
from api.metrics import metrics
from api.openapi.views import docs_page, openapi_json
from conversations.views import (
    ConversationCreateApi,
    ConversationDetailApi,
    ConversationItemDetailApi,
    ConversationItemsApi,
)
from engines.admin_health import engine_health
from engines.views import ModelListApi, ModelRetrieveApi
from responses.views import (
    InputTokensApi,
    ResponseCancelApi,
    ResponseCompactApi,
    ResponseCreateApi,
    ResponseDetailApi,
    ResponseInputItemsApi,
    ResponseToolOutputsApi,
)

admin.site.site_header = "Responses platform"
admin.site.site_title = "Responses platform admin"
# "View site": the tenant console (the site root has no page).
admin.site.site_url = "/console/"


def api_patterns(wrap=lambda view: view) -> list:
    """The API's routes; ``wrap`` adapts each view to a route form (Azure's, see api.azure)."""
    return [
        path("models", wrap(ModelListApi.as_view())),
        # Model ids may contain one slash (e.g. "HuggingFaceTB/SmolLM2-135M-Instruct").
        re_path(r"^models/(?P<model_id>[^/]+(?:/[^/]+)?)$", wrap(ModelRetrieveApi.as_view())),
        path("responses", wrap(ResponseCreateApi.as_view())),
        path("responses/input_tokens", wrap(InputTokensApi.as_view())),
        path("responses/compact", wrap(ResponseCompactApi.as_view())),
        # Response ids are resp_…: other words under /responses/ stay unknown routes, 404
        # "Invalid URL" for every method.
        re_path(
            r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)$", wrap(ResponseDetailApi.as_view())
        ),
        re_path(
            r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)/cancel$",
            wrap(ResponseCancelApi.as_view()),
        ),
        re_path(
            r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)/tool_outputs$",
            wrap(ResponseToolOutputsApi.as_view()),
        ),
        re_path(
            r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)/input_items$",
            wrap(ResponseInputItemsApi.as_view()),
        ),
        path("conversations", wrap(ConversationCreateApi.as_view())),
        re_path(
            r"^conversations/(?P<conversation_id>conv_[A-Za-z0-9]+)$",
            wrap(ConversationDetailApi.as_view()),
        ),
        re_path(
            r"^conversations/(?P<conversation_id>conv_[A-Za-z0-9]+)/items$",
            wrap(ConversationItemsApi.as_view()),
        ),
        re_path(
            r"^conversations/(?P<conversation_id>conv_[A-Za-z0-9]+)/items/"
            r"(?P<item_id>[A-Za-z0-9_-]+)$",
            wrap(ConversationItemDetailApi.as_view()),
        ),
    ]


v1_patterns = api_patterns()

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics),
    path("admin/engines/health/", engine_health, name="engine_health"),
    path("openapi.json", openapi_json),
    path("docs/", docs_page),
    path("admin/", admin.site.urls),
    path("console/", include("console.urls")),
    # The Administration API (admin keys only), before the rest of /v1/.
    path("v1/organization/", include("api.organization.urls")),
    # The API: /v1/ (OpenAI), and Azure's forms (api.azure): /openai/v1/ (api-version
    # optional), /openai/ and /openai/deployments/{deployment}/ (api-version required).
    path("v1/", include(v1_patterns)),
    path("openai/v1/", include(api_patterns(functools.partial(azure_route, dated=False)))),
    path(
        "openai/deployments/<str:deployment>/",
        include(api_patterns(functools.partial(azure_route, dated=True))),
    ),
    path("openai/", include(api_patterns(functools.partial(azure_route, dated=True)))),
]

# Unknown non-API paths answer JSON, with a hint when the path exists under /v1 (a base_url
# missing /v1).
handler404 = "api.not_found.not_found"
