"""Root URLconf: the portal's pages, the REST API, its schema and docs, and Django admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from portal import datastore_views, views

handler400 = "portal.views.bad_request"
handler403 = "portal.views.permission_denied"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"

workspace_patterns: list[URLPattern | URLResolver] = [
    path("", views.workspace_home, name="workspace-home"),
    path("settings/", views.workspace_settings, name="workspace-settings"),
    path("delete/", views.workspace_delete, name="workspace-delete"),
    path("members/", views.member_list, name="member-list"),
    path("members/<str:username>/role/", views.member_role, name="member-role"),
    path("members/<str:username>/remove/", views.member_remove, name="member-remove"),
    path("tokens/", views.token_list, name="token-list"),
    path("tokens/<str:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("audit/", views.audit_list, name="audit-list"),
    path("datastores/", datastore_views.datastore_list, name="datastore-list"),
    path(
        "datastores/<str:name>/default/",
        datastore_views.datastore_default,
        name="datastore-default",
    ),
    path(
        "datastores/<str:name>/unregister/",
        datastore_views.datastore_unregister,
        name="datastore-unregister",
    ),
    path(
        "datastores/<str:name>/browse/", datastore_views.datastore_browse, name="datastore-browse"
    ),
    path(
        "datastores/<str:name>/browse/<path:path>",
        datastore_views.datastore_browse,
        name="datastore-browse",
    ),
    path(
        "datastores/<str:name>/delete/<path:path>",
        datastore_views.datastore_delete,
        name="datastore-delete",
    ),
    path("", include("pipelines.urls")),
    path("", include("runs.urls")),
]

urlpatterns = [
    path("", views.workspace_list, name="workspace-list"),
    path("w/<str:workspace_id>/", include(workspace_patterns)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("portal.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="swagger-ui"),
]
