from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db import models
from django.utils import timezone

from gateway.ids import public_id


class Response(models.Model):
    """One stored Responses API response (only `store: true` responses get a row).

    `params` keeps the request parameters echoed on the wire (tools, tool_choice, text, ...),
    `input_items` the normalised input items (with ids), `output` the output items, all in the
    OpenAI wire shapes, so the object is rebuilt without translation. `principal` is the
    caller's identity as plain ids: a background worker calls the model as that caller.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        INCOMPLETE = "incomplete"

    public_id = models.CharField(max_length=64, unique=True, default=partial(public_id, "resp", 32))
    organization = models.ForeignKey("organizations.Organization", on_delete=models.CASCADE)
    project = models.ForeignKey("organizations.Project", on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # The chain is walked through this key to rebuild history; deleting a link ends the chain there.
    previous_response = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_response_public_id = models.CharField(max_length=64, blank=True, default="")
    conversation_public_id = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    background = models.BooleanField(default=False)
    stream = models.BooleanField(default=False)
    instructions = models.TextField(blank=True, default="")
    params = models.JSONField(default=dict)
    input_items = models.JSONField(default=list)
    output = models.JSONField(default=list)
    usage = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    incomplete_details = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict)
    principal = models.JSONField(default=dict)
    request_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)  # when a worker claimed it
    # A background run belongs to its worker until this moment; the worker pushes it forward
    # every few seconds, so a lapsed lease means the worker died (responses.services.responses_sweep).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Claims so far: the sweep re-queues a run once, and the number fences a worker that lost
    # its lease out of the row a newer claim now owns.
    attempts = models.PositiveSmallIntegerField(default=0)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["project", "created_at"]),
            models.Index(fields=["status", "lease_expires_at"], name="responses_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status not in (self.Status.QUEUED, self.Status.IN_PROGRESS)
