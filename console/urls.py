from django.contrib.auth.views import LogoutView
from django.urls import path

from console import views

app_name = "console"

org = "o/<slug:slug>/"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.ConsoleLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(next_page="console:login"), name="logout"),
    path("invite/<str:token>/", views.invite, name="invite"),
    path(org, views.usage, name="usage"),
    path(f"{org}usage.csv", views.usage_csv, name="usage_csv"),
    path(f"{org}projects/", views.projects, name="projects"),
    path(
        f"{org}projects/<str:project_id>/archive",
        views.project_archive_view,
        name="project_archive",
    ),
    path(f"{org}keys/", views.keys, name="keys"),
    path(f"{org}keys/<str:key_id>/created", views.key_created, name="key_created"),
    path(f"{org}keys/<str:key_id>/revoke", views.key_revoke, name="key_revoke"),
    path(f"{org}members/", views.members, name="members"),
    path(f"{org}members/<int:user_id>/role", views.member_role, name="member_role"),
    path(f"{org}members/<int:user_id>/remove", views.member_remove, name="member_remove"),
    path(f"{org}invites/<str:invite_id>/revoke", views.invite_revoke, name="invite_revoke"),
    path(f"{org}limits/", views.limits, name="limits"),
    path(f"{org}responses/", views.responses, name="responses"),
    path(f"{org}responses/<str:response_id>/", views.response_detail, name="response_detail"),
]
