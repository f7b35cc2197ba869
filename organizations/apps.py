from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _bootstrap_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    # Bootstrap is operator configuration (ORGANIZATION_ADMIN_EMAILS), applied on every migrate.
    from organizations.services import bootstrap_tenancy

    if kwargs.get("using", "default") == "default":
        bootstrap_tenancy()


class OrganizationsConfig(AppConfig):
    name = "organizations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_bootstrap_after_migrate, sender=self)
