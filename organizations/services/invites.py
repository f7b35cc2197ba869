"""Invites: create, resend, deliver by e-mail, accept with the code, delete.

The acceptance code is made when the e-mail goes out (`invite_deliver`) and only its HMAC is
stored: the code exists in the message and nowhere else, not even in the broker. A resend
therefore makes a new code and the previous message's link stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from functools import partial
from smtplib import SMTPException
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.html import escape

from gateway.errors import InvalidRequest
from organizations.models import Invite, Organization, OrganizationMember, Project, ProjectMember
from organizations.services.audit import Actor, audit_changes, audit_record
from organizations.services.tenancy import user_get_or_create

logger = logging.getLogger(__name__)

INVITE_TTL = timedelta(days=7)


def invite_secret_hash(code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"invite:{code}".encode(), hashlib.sha256).hexdigest()


def _enqueue_delivery(invite: Invite) -> None:
    from organizations import tasks

    transaction.on_commit(partial(tasks.invite_deliver.delay, invite.pk))


def _record(invite: Invite, actor: Actor, action: str, changes: dict[str, dict[str, Any]]) -> None:
    audit_record(
        organization=invite.organization,
        actor=actor,
        action=action,
        target_type="invite",
        target_id=invite.public_id,
        changes=changes,
    )


def _checked_projects(organization: Organization, projects: list[dict[str, str]]) -> list[dict[str, str]]:
    wanted = [entry["id"] for entry in projects]
    found = set(
        Project.objects.filter(
            organization=organization,
            public_id__in=wanted,
            deleted_at__isnull=True,
            status=Project.Status.ACTIVE,
        ).values_list("public_id", flat=True)
    )
    seen: set[str] = set()
    for index, entry in enumerate(projects):
        if entry["id"] not in found:
            raise InvalidRequest(
                f"No project with id '{entry['id']}' in this organization.",
                param=f"projects[{index}].id",
                code="project_not_found",
            )
        if entry["id"] in seen:
            raise InvalidRequest("A project is listed twice.", param=f"projects[{index}].id")
        seen.add(entry["id"])
    return [{"id": entry["id"], "role": entry["role"]} for entry in projects]


@transaction.atomic
def invite_create(
    *,
    organization: Organization,
    email: str,
    role: str,
    projects: list[dict[str, str]],
    actor: Actor,
) -> Invite:
    """Create a pending invite and queue its e-mail (after commit)."""
    email = email.strip().lower()
    if OrganizationMember.objects.filter(organization=organization, user__email=email).exists():
        raise InvalidRequest(
            "This e-mail already belongs to a member of the organization.",
            param="email",
            code="member_exists",
        )
    now = timezone.now()
    if Invite.objects.filter(
        organization=organization,
        email=email,
        status=Invite.Status.PENDING,
        deleted_at__isnull=True,
        expires_at__gt=now,
    ).exists():
        raise InvalidRequest(
            "A pending invite for this e-mail exists; resend it instead.", param="email", code="invite_exists"
        )
    invite = Invite.objects.create(
        organization=organization,
        email=email,
        role=role,
        projects=_checked_projects(organization, projects),
        invited_by_id=actor.user_id,
        invited_at=now,
        expires_at=now + INVITE_TTL,
    )
    _record(
        invite,
        actor,
        "invite.created",
        audit_changes({}, {"email": email, "role": role, "projects": invite.projects}),
    )
    _enqueue_delivery(invite)
    return invite


@transaction.atomic
def invite_resend(*, invite: Invite, actor: Actor) -> Invite:
    """Send again with a new code and a new 7-day window; an expired invite becomes pending again."""
    if invite.status == Invite.Status.ACCEPTED:
        raise InvalidRequest(
            "This invite has been accepted already.", param="invite_id", code="invite_already_used"
        )
    before = {
        "status": invite.status,
        "expires_at": invite.expires_at,
        "delivery_status": invite.delivery_status,
    }
    invite.status = Invite.Status.PENDING
    invite.delivery_status = Invite.Delivery.PENDING
    invite.delivery_error = ""
    invite.expires_at = timezone.now() + INVITE_TTL
    invite.save(update_fields=["status", "delivery_status", "delivery_error", "expires_at"])
    after = {
        "status": invite.status,
        "expires_at": invite.expires_at,
        "delivery_status": invite.delivery_status,
    }
    _record(invite, actor, "invite.resent", audit_changes(before, after))
    _enqueue_delivery(invite)
    return invite


@transaction.atomic
def invite_delete(*, invite: Invite, actor: Actor) -> Invite:
    invite.deleted_at = timezone.now()
    invite.save(update_fields=["deleted_at"])
    _record(
        invite,
        actor,
        "invite.deleted",
        audit_changes({"deleted_at": None}, {"deleted_at": invite.deleted_at}),
    )
    return invite


def _accept_link(code: str) -> str:
    base = settings.INVITE_REDIRECT_URL
    return f"{base}{'&' if '?' in base else '?'}{urlencode({'code': code})}"


def _message(invite: Invite, code: str) -> EmailMultiAlternatives:
    organization = invite.organization
    link = _accept_link(code)
    inviter = invite.invited_by.email if invite.invited_by else "An administrator"
    subject = f"You were invited to the organization {organization.name} on Jan"
    text = (
        f"{inviter} invited you to the organization {organization.name} ({organization.public_id}).\n\n"
        f"Accept the invite: {link}\n\nThis invite expires in 7 days.\n"
    )
    html = (
        f"<p>{escape(inviter)} invited you to the organization <b>{escape(organization.name)}</b> "
        f"({escape(organization.public_id)}).</p>"
        f'<p><a href="{escape(link)}">Accept Invite</a></p><p>This invite expires in 7 days.</p>'
    )
    message = EmailMultiAlternatives(
        subject,
        text,
        settings.DEFAULT_FROM_EMAIL,
        [invite.email],
        connection=get_connection(fail_silently=False),
    )
    message.attach_alternative(html, "text/html")
    return message


def invite_deliver(*, invite_id: int, final_attempt: bool) -> None:
    """Send the invite e-mail (the Celery task's body). Deliberately not one transaction: the SMTP
    conversation must not hold a database transaction open, and the outcome must stick.

    Safe to run twice: the pending -> sending claim lets one run through; a redelivered task
    finds nothing to claim and returns. A transient failure puts the invite back to pending and
    re-raises for the task's retry; the last attempt marks it failed and keeps it.
    """
    claimed = Invite.objects.filter(
        pk=invite_id,
        status=Invite.Status.PENDING,
        delivery_status=Invite.Delivery.PENDING,
        deleted_at__isnull=True,
    ).update(delivery_status=Invite.Delivery.SENDING, delivery_attempts=F("delivery_attempts") + 1)
    if claimed != 1:
        logger.info("invite delivery: nothing to send", extra={"invite_id": invite_id})
        return
    invite = Invite.objects.select_related("organization", "invited_by").get(pk=invite_id)
    code = secrets.token_urlsafe(32)
    # Stored before sending: a message never carries a code the database does not know.
    Invite.objects.filter(pk=invite_id).update(secret_hash=invite_secret_hash(code))
    try:
        _message(invite, code).send()
    except (SMTPException, OSError) as exc:
        outcome = Invite.Delivery.FAILED if final_attempt else Invite.Delivery.PENDING
        Invite.objects.filter(pk=invite_id, delivery_status=Invite.Delivery.SENDING).update(
            delivery_status=outcome, delivery_error=f"{type(exc).__name__}: {exc}"[:300]
        )
        logger.warning(
            "invite delivery failed",
            extra={"invite_id": invite.public_id, "final": final_attempt, "error": type(exc).__name__},
        )
        if not final_attempt:
            raise
        return
    Invite.objects.filter(pk=invite_id, delivery_status=Invite.Delivery.SENDING).update(
        delivery_status=Invite.Delivery.SENT, delivery_error="", sent_at=timezone.now()
    )


def _invalid_code() -> InvalidRequest:
    return InvalidRequest("This invite code is not valid.", param="code", code="invalid_invite_code")


def invite_accept(*, code: str) -> Invite:
    """Accept by code: find or create the user, add the memberships, mark accepted.

    An expired invite is marked expired outside any transaction, so the change sticks although
    the caller gets a 400.
    """
    invite = (
        Invite.objects.select_related("organization")
        .filter(secret_hash=invite_secret_hash(code), deleted_at__isnull=True)
        .first()
    )
    if invite is None or invite.organization.deleted_at is not None:
        raise _invalid_code()
    if invite.status == Invite.Status.ACCEPTED:
        raise InvalidRequest("This invite has been used already.", param="code", code="invite_already_used")
    if invite.status == Invite.Status.EXPIRED or invite.expires_at <= timezone.now():
        if Invite.objects.filter(pk=invite.pk, status=Invite.Status.PENDING).update(
            status=Invite.Status.EXPIRED
        ):
            invite.status = Invite.Status.EXPIRED
            _record(
                invite,
                Actor(type="system"),
                "invite.expired",
                audit_changes({"status": "pending"}, {"status": "expired"}),
            )
        raise InvalidRequest(
            "This invite has expired; ask for a new one.", param="code", code="invite_expired"
        )
    return _invite_accept(invite)


def _upgrade(current: str, wanted: str, owner: str) -> str:
    """Accepting never demotes: an owner invited as a reader stays an owner."""
    return owner if owner in (current, wanted) else wanted


@transaction.atomic
def _invite_accept(invite: Invite) -> Invite:
    now = timezone.now()
    # The claim makes a concurrent second acceptance of the same code fail cleanly.
    if not Invite.objects.filter(pk=invite.pk, status=Invite.Status.PENDING).update(
        status=Invite.Status.ACCEPTED, accepted_at=now
    ):
        raise InvalidRequest("This invite has been used already.", param="code", code="invite_already_used")
    user, _ = user_get_or_create(email=invite.email)
    member, created = OrganizationMember.objects.get_or_create(
        organization=invite.organization, user=user, defaults={"role": invite.role}
    )
    if not created and member.role != (
        role := _upgrade(member.role, invite.role, OrganizationMember.Role.OWNER)
    ):
        member.role = role
        member.save(update_fields=["role"])
    projects = {
        project.public_id: project
        for project in Project.objects.filter(
            organization=invite.organization,
            public_id__in=[entry["id"] for entry in invite.projects],
            deleted_at__isnull=True,
        )
    }
    for entry in invite.projects:
        project = projects.get(entry["id"])
        if project is None:  # deleted since the invite was made
            continue
        project_member, created = ProjectMember.objects.get_or_create(
            project=project, user=user, defaults={"role": entry["role"]}
        )
        wanted = _upgrade(project_member.role, entry["role"], ProjectMember.Role.OWNER)
        if not created and project_member.role != wanted:
            project_member.role = wanted
            project_member.save(update_fields=["role"])
    invite.status, invite.accepted_at = Invite.Status.ACCEPTED, now
    _record(
        invite,
        Actor(type="invitee", id=user.public_id, user_id=user.pk, user_public_id=user.public_id),
        "invite.accepted",
        audit_changes({"status": "pending"}, {"status": "accepted"}),
    )
    return invite
