"""Pages of pipelines, mounted under ``/w/<workspace>/``."""

from django.urls import path

from pipelines import views

urlpatterns = [
    path("pipelines/", views.pipeline_list, name="pipeline-list"),
    path("pipelines/<str:pipeline_id>/", views.pipeline_detail, name="pipeline-detail"),
    path("pipelines/<str:pipeline_id>/submit/", views.pipeline_submit, name="pipeline-submit"),
]
