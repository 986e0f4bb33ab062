"""Pages of runs and experiments, mounted under ``/w/<workspace>/``."""

from django.urls import path

from runs import run_views, views

urlpatterns = [
    path("experiments/", views.experiment_list, name="experiment-list"),
    path("runs/", views.run_list, name="run-list"),
    path("runs/compare/", run_views.run_compare, name="run-compare"),
    path("runs/<str:run_id>/", run_views.run_detail, name="run-detail"),
    path("runs/<str:run_id>/cancel/", run_views.run_cancel, name="run-cancel"),
    path("runs/<str:run_id>/resubmit/", run_views.run_resubmit, name="run-resubmit"),
    path("runs/<str:run_id>/steps/<str:step_id>/", run_views.step_detail, name="step-detail"),
    path(
        "runs/<str:run_id>/steps/<str:step_id>/outputs/<str:name>.zip",
        run_views.step_output_zip,
        name="step-output-zip",
    ),
    path(
        "runs/<str:run_id>/steps/<str:step_id>/log.txt",
        run_views.step_log_download,
        name="step-log-download",
    ),
]
