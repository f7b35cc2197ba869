"""Conversations and their items (OpenAI's Conversations API, plus jan's title).

A conversation belongs to a project and, within it, to its creator: a user, or a service
account for service keys. Deletion is soft for both conversations and items (OpenAI keeps a
deleted conversation's items; we keep the rows and hide them).
"""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db import models
from django.utils import timezone

from gateway.ids import public_id
from organizations.models import Organization, Project, ServiceAccount


class Conversation(models.Model):
    public_id = models.CharField(
        max_length=64, unique=True, default=partial(public_id, "conv", 40), editable=False
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="conversations")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="conversations")
    creator_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="conversations",
    )
    creator_service_account = models.ForeignKey(
        ServiceAccount, on_delete=models.CASCADE, null=True, blank=True, related_name="conversations"
    )
    title = models.CharField(max_length=256, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The caller's conversations, newest first: every list and lookup filters on these.
            models.Index(fields=["project", "creator_user", "id"], name="conv_project_user_idx"),
            models.Index(fields=["project", "creator_service_account", "id"], name="conv_project_svc_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.title or 'Conversation'} ({self.public_id})"


class Item(models.Model):
    """One conversation item. `content` holds a message's parts; `data` the other types' fields
    (function_call: call_id/name/arguments; function_call_output: call_id/output; reasoning:
    summary/content/encrypted_content). Order is the primary key: items are written in order."""

    class Type(models.TextChoices):
        MESSAGE = "message"
        FUNCTION_CALL = "function_call"
        FUNCTION_CALL_OUTPUT = "function_call_output"
        REASONING = "reasoning"

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        INCOMPLETE = "incomplete"

    public_id = models.CharField(max_length=64)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="items")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # The Responses API's `resp_…` id when a response produced the item. A plain string: the
    # responses app sits above this one and owns that table.
    response_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    type = models.CharField(max_length=32, choices=Type.choices)
    role = models.CharField(max_length=16, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETED)
    content = models.JSONField(default=list, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # The upstream's usage for a model reply, as it reported it (not exposed on the item).
    usage = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Ids are unique per conversation: a client may send items back with the ids it got.
            models.UniqueConstraint(
                fields=["conversation", "public_id"], name="item_id_unique_in_conversation"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"
