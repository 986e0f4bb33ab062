from django.urls import include, path
from rest_framework.routers import SimpleRouter

from pipelines.api import views as pipeline_views
from portal.api import datastores, views
from runs.api import views as run_views

router = SimpleRouter()
router.register("workspaces", views.WorkspaceViewSet, basename="api-workspace")

workspace_router = SimpleRouter()
workspace_router.register("members", views.MemberViewSet, basename="api-member")
workspace_router.register("tokens", views.TokenViewSet, basename="api-token")
workspace_router.register("audit", views.AuditViewSet, basename="api-audit")
workspace_router.register("datastores", datastores.DatastoreViewSet, basename="api-datastore")
workspace_router.register("compute", views.ComputeTargetViewSet, basename="api-compute")
workspace_router.register("snapshots", pipeline_views.SnapshotViewSet, basename="api-snapshot")
workspace_router.register("pipelines", pipeline_views.PipelineViewSet, basename="api-pipeline")
workspace_router.register("runs", run_views.RunViewSet, basename="api-run")
workspace_router.register("experiments", run_views.ExperimentViewSet, basename="api-experiment")

steps = run_views.StepViewSet
STEP = "workspaces/<str:workspace_id>/runs/<str:run_id>/steps/<str:step_id>/"

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("", include(router.urls)),
    path(
        "workspaces/<str:workspace_id>/datastores/<str:name>/files/<path:path>",
        datastores.DatastoreFileView.as_view(),
        name="api-datastore-file",
    ),
    path(
        "workspaces/<str:workspace_id>/snapshots/blobs/<str:sha256>",
        pipeline_views.SnapshotBlobView.as_view(),
        name="api-snapshot-blob",
    ),
    path(
        "workspaces/<str:workspace_id>/snapshots/<str:digest>/files/<path:path>",
        pipeline_views.SnapshotFileView.as_view(),
        name="api-snapshot-file",
    ),
    path(
        "workspaces/<str:workspace_id>/runs/<str:run_id>/steps/",
        steps.as_view({"get": "list"}),
        name="api-step-list",
    ),
    path(STEP, steps.as_view({"get": "retrieve"}), name="api-step-detail"),
    path(f"{STEP}cancel/", steps.as_view({"post": "cancel"}), name="api-step-cancel"),
    path(f"{STEP}logs/", steps.as_view({"get": "logs"}), name="api-step-logs"),
    path(f"{STEP}metrics/", steps.as_view({"get": "metrics"}), name="api-step-metrics"),
    path(f"{STEP}outputs/", steps.as_view({"get": "outputs"}), name="api-step-outputs"),
    path("workspaces/<str:workspace_id>/", include(workspace_router.urls)),
]
