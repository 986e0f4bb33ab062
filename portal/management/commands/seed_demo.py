"""Create the demo user and workspace once; print the credentials only when they are new."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from portal import services
from portal.models import Workspace

DEMO_USERNAME = "demo"
DEMO_SLUG = "demo"


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
        if password is not None:
            self.stdout.write(
                f"Demo login (shown once, keep it): username {DEMO_USERNAME}  password {password}"
            )
        else:
            self.stdout.write(
                f"Demo user '{DEMO_USERNAME}' exists. Lost its password? "
                f"Run: .venv/bin/python manage.py changepassword {DEMO_USERNAME}"
            )
