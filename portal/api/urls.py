from django.urls import include, path
from rest_framework.routers import SimpleRouter

from portal.api import datastores, views

router = SimpleRouter()
router.register("workspaces", views.WorkspaceViewSet, basename="api-workspace")

workspace_router = SimpleRouter()
workspace_router.register("members", views.MemberViewSet, basename="api-member")
workspace_router.register("tokens", views.TokenViewSet, basename="api-token")
workspace_router.register("audit", views.AuditViewSet, basename="api-audit")
workspace_router.register("datastores", datastores.DatastoreViewSet, basename="api-datastore")
workspace_router.register("compute", views.ComputeTargetViewSet, basename="api-compute")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("", include(router.urls)),
    path(
        "workspaces/<str:workspace_id>/datastores/<str:name>/files/<path:path>",
        datastores.DatastoreFileView.as_view(),
        name="api-datastore-file",
    ),
    path("workspaces/<str:workspace_id>/", include(workspace_router.urls)),
]
