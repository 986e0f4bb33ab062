from django.urls import include, path
from rest_framework.routers import SimpleRouter

from portal.api import datastores, views

router = SimpleRouter()
router.register("workspaces", views.WorkspaceViewSet, basename="workspace")

workspace_router = SimpleRouter()
workspace_router.register("members", views.MemberViewSet, basename="member")
workspace_router.register("tokens", views.TokenViewSet, basename="token")
workspace_router.register("audit", views.AuditViewSet, basename="audit")
workspace_router.register("datastores", datastores.DatastoreViewSet, basename="datastore")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("", include(router.urls)),
    path(
        "workspaces/<str:workspace_id>/datastores/<str:name>/files/<path:path>",
        datastores.DatastoreFileView.as_view(),
        name="datastore-file",
    ),
    path("workspaces/<str:workspace_id>/", include(workspace_router.urls)),
]
