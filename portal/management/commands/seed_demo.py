"""Create the demo user, workspace and sample pipeline once; print the credentials only when
they are new."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from pipelines.models import Pipeline
from pipelines.services import create_pipeline
from pipelines.snapshots import snapshot_from_directory
from portal import services
from portal.models import Workspace

DEMO_USERNAME = "demo"
DEMO_SLUG = "demo"
SAMPLE_NAME = "Sample: quickstart"
SAMPLE_SOURCE = Path(__file__).resolve().parents[3] / "examples" / "quickstart" / "src"


def sample_graph(snapshot: str) -> dict[str, Any]:
    """examples/quickstart/pipeline.py as a graph: prepare → train → evaluate on `local`."""

    def step(name: str, arguments: list[Any], inputs: list[str], output: str) -> dict[str, Any]:
        return {
            "name": name,
            "script": f"{name}.py",
            "snapshot": snapshot,
            "compute_target": "local",
            "arguments": arguments,
            "inputs": {i: {"pipeline_data": i} for i in inputs},
            "outputs": {output: {"datastore": "workspacefilestore"}},
        }

    return {
        "parameters": {"tolerance": {"type": "float", "default": 0.75}},
        "steps": [
            step("prepare", ["--output", {"output": "prepared"}], [], "prepared"),
            step(
                "train",
                [
                    "--data",
                    {"input": "prepared"},
                    "--epochs",
                    "40",
                    "--output",
                    {"output": "model"},
                ],
                ["prepared"],
                "model",
            ),
            step(
                "evaluate",
                [
                    "--data",
                    {"input": "prepared"},
                    "--model",
                    {"input": "model"},
                    "--tolerance",
                    {"parameter": "tolerance"},
                    "--output",
                    {"output": "report"},
                ],
                ["prepared", "model"],
                "report",
            ),
        ],
    }


class Command(BaseCommand):
    help = "Create the demo user and the demo workspace if they do not exist."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        with transaction.atomic():
            user = user_model.objects.filter(username=DEMO_USERNAME).first()
            password = None
            if user is None:
                password = secrets.token_urlsafe(12)
                user = user_model.objects.create_superuser(
                    username=DEMO_USERNAME, password=password, first_name="Demo", email=""
                )
            if not Workspace.objects.filter(slug=DEMO_SLUG).exists():
                services.create_workspace(
                    actor=services.Actor(user=user, via="system"),
                    name="Demo",
                    slug=DEMO_SLUG,
                    description="A workspace to try Millrace in.",
                )
        workspace = Workspace.objects.get(slug=DEMO_SLUG)
        if not Pipeline.objects.filter(workspace=workspace, name=SAMPLE_NAME).exists():
            snapshot, _ = snapshot_from_directory(workspace, SAMPLE_SOURCE)
            create_pipeline(
                actor=services.Actor(user=user, via="system"),
                workspace=workspace,
                graph=sample_graph(snapshot.digest),
                name=SAMPLE_NAME,
                description="prepare → train → evaluate (examples/quickstart), on `local`.",
            )
        if password is not None:
            self.stdout.write(
                f"Demo login (shown once, keep it): username {DEMO_USERNAME}  password {password}"
            )
        else:
            self.stdout.write(
                f"Demo user '{DEMO_USERNAME}' exists. Lost its password? "
                f"Run: .venv/bin/python manage.py changepassword {DEMO_USERNAME}"
            )
