"""python manage.py createprojectkey --email EMAIL [--name NAME]

Ensures the user (and their Default Project) and prints a new project API key for that project:
the quickest way for an operator, a script or the benchmark to call the inference API.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from organizations import services
from organizations.models import ApiKey


class Command(BaseCommand):
    help = "Create a project API key in EMAIL's Default Project and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="Project key")

    @transaction.atomic
    def handle(self, *args: Any, email: str, name: str, **options: Any) -> None:
        user, _ = services.user_get_or_create(email=email)
        project = services.user_provision(user=user)
        _, raw_key = services.api_key_create(
            organization=project.organization,
            project=project,
            key_type=ApiKey.Type.PROJECT,
            name=name,
            owner_user_id=user.pk,
        )
        self.stdout.write(raw_key)
