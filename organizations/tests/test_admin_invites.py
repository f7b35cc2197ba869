"""Invites end to end against a real SMTP sink: delivery, failure kept, verification, expiry, reuse."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from organizations.models import AuditLogEntry, Invite, OrganizationMember, ProjectMember
from organizations.tests.factories import make_api_key, make_org, make_project, make_user
from organizations.tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.django_db


def post(path: str, body: Any, token: str | None = None) -> Any:
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client().post(path, data=body, content_type="application/json", **extra)


@pytest.fixture
def org_and_key() -> tuple[Any, Any, str]:
    owner = make_user()
    org = make_org(owner=owner, name="Acme")
    project = make_project(org=org)
    _, raw = make_api_key(org=org, key_type="admin", user=owner)
    return org, project, raw


def _code(sink: SmtpSink) -> str:
    match = re.search(r"https://app\.example/invite\?code=([A-Za-z0-9_\-]+)", sink.messages[-1].text())
    assert match, sink.messages[-1].text()
    return match.group(1)


def test_invite_end_to_end(
    smtp_sink: SmtpSink, org_and_key: tuple[Any, Any, str], django_capture_on_commit_callbacks: Any
) -> None:
    org, project, key = org_and_key
    with django_capture_on_commit_callbacks(execute=True):
        created = post(
            f"/v1/organization/{org.public_id}/invites",
            {
                "email": "New.Person@Example.com",
                "role": "reader",
                "projects": [{"id": project.public_id, "role": "owner"}],
            },
            key,
        )
    assert created.status_code == 201
    body = created.json()
    assert body == {
        "object": "organization.invite",
        "id": body["id"],
        "email": "new.person@example.com",
        "role": "reader",
        "status": "pending",
        "delivery_status": "pending",
        "invited_at": body["invited_at"],
        "expires_at": body["invited_at"] + 7 * 86400,
        "accepted_at": None,
        "projects": [{"id": project.public_id, "role": "owner"}],
    }
    assert len(smtp_sink.messages) == 1
    message = smtp_sink.messages[0]
    assert message.recipients == ["new.person@example.com"]
    assert "Acme" in message.message["Subject"]
    code = _code(smtp_sink)
    invite = Invite.objects.get(public_id=body["id"])
    assert invite.delivery_status == "sent"
    assert invite.secret_hash
    assert code not in invite.secret_hash
    fetched = (
        Client().get(f"/v1/organization/invites/{body['id']}", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    )
    assert fetched["delivery_status"] == "sent"

    accepted = post("/v1/organization/invites/verification", {"code": code})
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["accepted_at"]
    user = User.objects.get(email="new.person@example.com")
    assert OrganizationMember.objects.get(organization=org, user=user).role == "reader"
    assert ProjectMember.objects.get(project=project, user=user).role == "owner"

    reused = post("/v1/organization/invites/verification", {"code": code})
    assert reused.status_code == 400
    assert reused.json()["error"] == {
        "message": "This invite has been used already.",
        "type": "invalid_request_error",
        "param": "code",
        "code": "invite_already_used",
    }
    dump = str(list(AuditLogEntry.objects.values()))
    assert code not in dump
    assert invite.secret_hash not in dump
    assert {"invite.created", "invite.accepted"} <= set(
        AuditLogEntry.objects.values_list("action", flat=True)
    )


def test_delivery_failure_keeps_the_invite_as_failed(
    smtp_sink: SmtpSink, org_and_key: tuple[Any, Any, str], django_capture_on_commit_callbacks: Any
) -> None:
    org, _, key = org_and_key
    smtp_sink.fail_with = "451 try again later"
    with django_capture_on_commit_callbacks(execute=True):
        created = post(f"/v1/organization/{org.public_id}/invites", {"email": "x@example.com"}, key)
    assert created.status_code == 201
    invite = Invite.objects.get(public_id=created.json()["id"])
    assert invite.delivery_status == "failed"
    assert invite.delivery_attempts == 6  # the first try and five retries
    assert "SMTPSenderRefused" in invite.delivery_error
    assert smtp_sink.messages == []
    # Resend once the server is back: a fresh code arrives and works.
    smtp_sink.fail_with = None
    with django_capture_on_commit_callbacks(execute=True):
        resent = post(f"/v1/organization/invites/{invite.public_id}/resend", {}, key)
    assert resent.status_code == 200
    invite.refresh_from_db()
    assert invite.delivery_status == "sent"
    assert post("/v1/organization/invites/verification", {"code": _code(smtp_sink)}).status_code == 200


def test_unreachable_smtp_server_fails_delivery(
    smtp_sink: SmtpSink,
    settings: Any,
    org_and_key: tuple[Any, Any, str],
    django_capture_on_commit_callbacks: Any,
) -> None:
    org, _, key = org_and_key
    settings.EMAIL_PORT = 1  # nothing listens there: connection refused (OSError)
    with django_capture_on_commit_callbacks(execute=True):
        created = post(f"/v1/organization/{org.public_id}/invites", {"email": "y@example.com"}, key)
    invite = Invite.objects.get(public_id=created.json()["id"])
    assert invite.delivery_status == "failed"
    assert invite.deleted_at is None


def test_expired_invite_becomes_expired(
    smtp_sink: SmtpSink, org_and_key: tuple[Any, Any, str], django_capture_on_commit_callbacks: Any
) -> None:
    org, _, key = org_and_key
    with django_capture_on_commit_callbacks(execute=True):
        created = post(f"/v1/organization/{org.public_id}/invites", {"email": "late@example.com"}, key)
    code = _code(smtp_sink)
    Invite.objects.filter(public_id=created.json()["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = post("/v1/organization/invites/verification", {"code": code})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invite_expired"
    assert response.json()["error"]["param"] == "code"
    assert Invite.objects.get(public_id=created.json()["id"]).status == "expired"
    assert not User.objects.filter(email="late@example.com").exists()
    again = post("/v1/organization/invites/verification", {"code": code})
    assert again.json()["error"]["code"] == "invite_expired"


def test_unknown_code_and_bad_body(smtp_sink: SmtpSink) -> None:
    response = post("/v1/organization/invites/verification", {"code": "nope"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_invite_code"
    response = post("/v1/organization/invites/verification", {"code": "x", "extra": 1})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "extra"


def test_invite_for_a_member_or_twice_is_400(smtp_sink: SmtpSink, org_and_key: tuple[Any, Any, str]) -> None:
    org, _, key = org_and_key
    member = make_user()
    OrganizationMember.objects.create(organization=org, user=member, role="reader")
    response = post(f"/v1/organization/{org.public_id}/invites", {"email": member.email}, key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "member_exists"
    assert (
        post(f"/v1/organization/{org.public_id}/invites", {"email": "z@example.com"}, key).status_code == 201
    )
    twice = post(f"/v1/organization/{org.public_id}/invites", {"email": "z@example.com"}, key)
    assert twice.status_code == 400
    assert twice.json()["error"]["param"] == "email"
    assert Invite.objects.filter(email="z@example.com").count() == 1


def test_delete_invite_kills_its_code(
    smtp_sink: SmtpSink, org_and_key: tuple[Any, Any, str], django_capture_on_commit_callbacks: Any
) -> None:
    org, _, key = org_and_key
    with django_capture_on_commit_callbacks(execute=True):
        created = post(f"/v1/organization/{org.public_id}/invites", {"email": "d@example.com"}, key).json()
    response = Client().delete(
        f"/v1/organization/invites/{created['id']}", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.json() == {"object": "organization.invite.deleted", "id": created["id"], "deleted": True}
    assert post("/v1/organization/invites/verification", {"code": _code(smtp_sink)}).status_code == 400


def test_task_runs_twice_sends_once(smtp_sink: SmtpSink, org_and_key: tuple[Any, Any, str]) -> None:
    from organizations import tasks

    org, _, key = org_and_key
    created = post(f"/v1/organization/{org.public_id}/invites", {"email": "once@example.com"}, key).json()
    invite = Invite.objects.get(public_id=created["id"])
    tasks.invite_deliver(invite.pk)
    tasks.invite_deliver(invite.pk)
    assert len(smtp_sink.messages) == 1


def test_smtp_port_settings() -> None:
    import subprocess
    import sys

    def email_settings(port: str) -> str:
        code = "from django.conf import settings as s; print(s.EMAIL_USE_SSL, s.EMAIL_USE_TLS)"
        env = {
            "GATEWAY_ENV": "test",
            "SMTP_HOST": "mail.example",
            "SMTP_PORT": port,
            "DJANGO_SETTINGS_MODULE": "gateway.settings",
            "PATH": "",
        }
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    assert email_settings("465") == "True False"
    assert email_settings("587") == "False True"
