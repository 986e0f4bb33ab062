from django.urls import include, path
from rest_framework.routers import SimpleRouter

from portal.api import views

router = SimpleRouter()
router.register("workspaces", views.WorkspaceViewSet, basename="workspace")

workspace_router = SimpleRouter()
workspace_router.register("members", views.MemberViewSet, basename="member")
workspace_router.register("tokens", views.TokenViewSet, basename="token")
workspace_router.register("audit", views.AuditViewSet, basename="audit")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("", include(router.urls)),
    path("workspaces/<str:workspace_id>/", include(workspace_router.urls)),
]
