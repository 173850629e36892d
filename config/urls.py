from django.contrib import admin
from django.urls import include, path, re_path

from api.health import healthz, readyz
from api.openapi.views import docs_page, openapi_json
from engines.views import ModelListApi, ModelRetrieveApi
from responses.views import (
    InputTokensApi,
    ResponseCancelApi,
    ResponseCreateApi,
    ResponseDetailApi,
    ResponseInputItemsApi,
    ResponseToolOutputsApi,
)

admin.site.site_header = "Responses platform"
admin.site.site_title = "Responses platform admin"

v1_patterns = [
    path("models", ModelListApi.as_view()),
    # Model ids may contain one slash (e.g. "HuggingFaceTB/SmolLM2-135M-Instruct").
    re_path(r"^models/(?P<model_id>[^/]+(?:/[^/]+)?)$", ModelRetrieveApi.as_view()),
    path("responses", ResponseCreateApi.as_view()),
    path("responses/input_tokens", InputTokensApi.as_view()),
    # Response ids are resp_…: other words under /responses/ (e.g. "compact", not built yet)
    # stay unknown routes, 404 "Invalid URL" for every method.
    re_path(r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)$", ResponseDetailApi.as_view()),
    re_path(r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)/cancel$", ResponseCancelApi.as_view()),
    re_path(
        r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)/tool_outputs$",
        ResponseToolOutputsApi.as_view(),
    ),
    re_path(
        r"^responses/(?P<response_id>resp_[A-Za-z0-9]+)/input_items$",
        ResponseInputItemsApi.as_view(),
    ),
]

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("openapi.json", openapi_json),
    path("docs/", docs_page),
    path("admin/", admin.site.urls),
    # The API: /v1/ (OpenAI) and /openai/v1/ (Azure's v1 form).
    path("v1/", include(v1_patterns)),
    path("openai/v1/", include(v1_patterns)),
]

# Unknown non-API paths answer JSON, with a hint when the path exists under /v1 (a base_url
# missing /v1).
handler404 = "api.not_found.not_found"
