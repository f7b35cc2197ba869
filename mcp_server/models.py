from __future__ import annotations

from django.db import models
from django.utils import timezone

from organizations.models import Organization, Project


class ToolCall(models.Model):
    """One MCP tool call, attributed to the caller: the usage record of the MCP server.

    Written off the request path (mcp_server.services.tool_call_record). Ids of keys and users
    are plain integers, as in inference.UsageRecord, so the row outlives a deleted key.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, null=True, on_delete=models.CASCADE, related_name="+")
    api_key_id = models.BigIntegerField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    tool = models.CharField(max_length=64)
    is_error = models.BooleanField(default=False)
    latency_ms = models.FloatField(default=0)
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"], name="mcp_toolcall_org_time")]

    def __str__(self) -> str:
        return f"{self.tool} ({'error' if self.is_error else 'ok'})"
