"""Writes of the MCP server: the usage record of a tool call."""

from __future__ import annotations

from accounts.auth import Principal
from mcp_server.models import ToolCall


def tool_call_record(
    *, principal: Principal, tool: str, is_error: bool, latency_ms: float, request_id: str = ""
) -> ToolCall:
    return ToolCall.objects.create(
        organization_id=principal.organization_id,
        project_id=principal.project_id,
        api_key_id=principal.api_key_id,
        user_id=principal.user_id,
        tool=tool,
        is_error=is_error,
        latency_ms=round(latency_ms, 2),
        request_id=request_id,
    )
