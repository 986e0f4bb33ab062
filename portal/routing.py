from django.urls import path

from portal.consumers import PingConsumer
from runs.consumers import RunConsumer

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
    path("ws/runs/<str:run_id>/", RunConsumer.as_asgi()),
]
