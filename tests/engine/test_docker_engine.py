"""The engine on the `docker` target: cancel stops the container and leaves none behind; the
step sees no network and no server secret."""

from __future__ import annotations

import uuid
from typing import Any

import docker
import pytest

from portal import services
from runs.logs import log_text
from runs.models import Status
from runs.services import cancel_run
from tests.engine.conftest import wait_for
from tests.engine.test_engine_behaviour import (
    SLEEPER,
    driver_has,
    steps_of,
    submit,
    summary,
    wait_until,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PROBE = """
import os, socket
print("secrets:", sorted(k for k in os.environ if k in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")))
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network: yes")
except OSError as exc:
    print("network: no", type(exc).__name__)
"""


def containers_of(step_uuid: Any) -> list[Any]:
    client = docker.from_env()
    try:
        return list(
            client.containers.list(all=True, filters={"label": f"millrace.step={step_uuid}"})
        )
    finally:
        client.close()


def graph(digest: str, script: str, marker: str) -> dict[str, Any]:
    return {
        "steps": [
            {
                "name": "step",
                "script": script,
                "snapshot": digest,
                "compute_target": "docker",
                "arguments": [marker],
            }
        ]
    }


def test_cancel_mid_step_on_docker_leaves_no_container(worker, engine_ws, alice, snapshot_of):
    marker = f"mlr-docker-cancel-{uuid.uuid4().hex}"
    digest = snapshot_of({"sleeper.py": SLEEPER})
    run = submit(engine_ws, alice, graph(digest, "sleeper.py", marker))
    wait_until(lambda: driver_has(run, "step", f"started {marker}"), "first line", worker)
    step = steps_of(run)["step"]
    assert containers_of(step.uuid), "the step's container should be running"
    cancel_run(actor=services.Actor(user=alice), run=run)
    run = wait_for(run, worker, timeout=90)
    step = steps_of(run)["step"]
    assert run.status == Status.CANCELED, summary(run)
    assert step.status == Status.CANCELED
    assert containers_of(step.uuid) == []
    assert "woke up" not in log_text(step)


def test_a_docker_step_has_no_network_and_no_secrets(worker, engine_ws, alice, snapshot_of):
    digest = snapshot_of({"probe.py": PROBE})
    run = wait_for(submit(engine_ws, alice, graph(digest, "probe.py", "x")), worker, timeout=90)
    step = steps_of(run)["step"]
    assert run.status == Status.COMPLETED, summary(run)
    text = log_text(step)
    assert "secrets: []" in text
    assert "network: no" in text
    assert containers_of(step.uuid) == []
