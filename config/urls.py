from django.contrib import admin
from django.urls import include, path, re_path

from api.health import healthz, readyz
from api.metrics import metrics
from engines.admin_health import engine_health
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
# "View site": the tenant console (the site root has no page).
admin.site.site_url = "/console/"

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
    path("metrics", metrics),
    path("admin/engines/health/", engine_health, name="engine_health"),
    path("admin/", admin.site.urls),
    path("console/", include("console.urls")),
    # The Administration API (admin keys only), before the rest of /v1/.
    path("v1/organization/", include("api.organization.urls")),
    # The API: /v1/ (OpenAI) and /openai/v1/ (Azure's v1 form).
    path("v1/", include(v1_patterns)),
    path("openai/v1/", include(v1_patterns)),
]
