from django.urls import path

from api.organization import views

projects = views.ProjectViewSet
keys = views.ProjectApiKeyViewSet
limits = views.RateLimitViewSet
users = views.UserViewSet
invites = views.InviteViewSet
admin_keys = views.AdminApiKeyViewSet
usage = views.UsageViewSet

urlpatterns = [
    path("projects", projects.as_view({"get": "list", "post": "create"})),
    path(
        "projects/<str:project_id>",
        projects.as_view({"get": "retrieve", "post": "update"}),
    ),
    path("projects/<str:project_id>/archive", projects.as_view({"post": "archive"})),
    path(
        "projects/<str:project_id>/api_keys",
        keys.as_view({"get": "list", "post": "create"}),
    ),
    path(
        "projects/<str:project_id>/api_keys/<str:api_key_id>",
        keys.as_view({"get": "retrieve", "post": "update", "delete": "destroy"}),
    ),
    path("projects/<str:project_id>/rate_limits", limits.as_view({"get": "list"})),
    path(
        "projects/<str:project_id>/rate_limits/<str:rate_limit_id>",
        limits.as_view({"post": "update"}),
    ),
    path("users", users.as_view({"get": "list"})),
    path(
        "users/<str:user_id>",
        users.as_view({"get": "retrieve", "post": "update", "delete": "destroy"}),
    ),
    path("invites", invites.as_view({"get": "list", "post": "create"})),
    path(
        "invites/<str:invite_id>",
        invites.as_view({"get": "retrieve", "delete": "destroy"}),
    ),
    path("admin_api_keys", admin_keys.as_view({"get": "list", "post": "create"})),
    path(
        "admin_api_keys/<str:key_id>",
        admin_keys.as_view({"get": "retrieve", "delete": "destroy"}),
    ),
    path("usage/completions", usage.as_view({"get": "completions"})),
    path("costs", usage.as_view({"get": "costs"})),
]
