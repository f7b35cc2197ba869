"""Remove the `reader` memberships of the default organization that sign-up used to hand out.

Every new user (guests included) used to become a reader of the default organization, which let
anyone read its members, invites and keys. New users now get only their Default Project. A reader
membership is kept when someone chose it: an owner added or changed it through the
administration API (its audit log says so), or the user accepted an invite to the organization.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

CHOSEN_ACTIONS = ("organization.user.added", "organization.user.updated")


def remove_automatic_readers(apps: Any, schema_editor: Any) -> None:
    Organization = apps.get_model("organizations", "Organization")
    OrganizationMember = apps.get_model("organizations", "OrganizationMember")
    AuditLogEntry = apps.get_model("organizations", "AuditLogEntry")
    Invite = apps.get_model("organizations", "Invite")
    default = Organization.objects.filter(is_default=True).first()
    if default is None:
        return
    chosen_users = set(
        AuditLogEntry.objects.filter(organization=default, action__in=CHOSEN_ACTIONS).values_list(
            "target_id", flat=True
        )
    )
    invited_emails = {
        email.lower()
        for email in Invite.objects.filter(organization=default, status="accepted").values_list(
            "email", flat=True
        )
    }
    automatic = [
        member.pk
        for member in OrganizationMember.objects.filter(organization=default, role="reader").select_related(
            "user"
        )
        if member.user.public_id not in chosen_users and member.user.email.lower() not in invited_emails
    ]
    # In slices: a large deployment has one row per user who ever signed up.
    for start in range(0, len(automatic), 1000):
        OrganizationMember.objects.filter(pk__in=automatic[start : start + 1000]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("organizations", "0003_rate_limits"),
    ]

    operations = [
        migrations.RunPython(remove_automatic_readers, migrations.RunPython.noop, elidable=True),
    ]
