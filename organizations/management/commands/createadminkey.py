"""python manage.py createadminkey --email EMAIL [--name NAME] [--organization org_…]

Ensures the user exists and owns the organization (default: the default organization),
creates an admin key and prints only the key on stdout (scripts rely on that).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from organizations import services
from organizations.models import ApiKey, Organization, OrganizationMember


class Command(BaseCommand):
    help = "Create an admin API key for EMAIL (made an owner of the organization) and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="Admin key")
        parser.add_argument("--organization", default=None, help="org_… (default: the default organization)")

    @transaction.atomic
    def handle(self, *args: Any, email: str, name: str, organization: str | None, **options: Any) -> None:
        if organization:
            org = Organization.objects.filter(public_id=organization, deleted_at__isnull=True).first()
            if org is None:
                raise CommandError(f"No organization with id '{organization}'.")
        else:
            org = services.organization_ensure_default()
        user, _ = services.user_get_or_create(email=email, name="Admin")
        services.organization_member_set(organization=org, user=user, role=OrganizationMember.Role.OWNER)
        _, raw_key = services.api_key_create(
            organization=org, key_type=ApiKey.Type.ADMIN, name=name, owner_user_id=user.pk
        )
        self.stdout.write(raw_key)
