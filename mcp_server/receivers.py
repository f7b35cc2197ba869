"""Conversation changes → MCP resource updates, on every worker (mcp_server.sessions).

Not a business flow, so a signal is the right seam: conversations must not know
that MCP exists, and the update is only a hint that subscribers should read the resource again.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def on_items_added(sender: Any, *, conversation: Any, items: Any = None, **kwargs: Any) -> None:
    """Sent after commit by conversations when a conversation gains items."""
    # Imported here: they load the MCP SDK (38 MB), which a Celery process or a web worker
    # that never serves MCP need not carry.
    from mcp_server.resources import conversation_uri
    from mcp_server.sessions import publish_resource_updated

    publish_resource_updated(conversation_uri(conversation.public_id))


def connect() -> None:
    try:
        from conversations import signals  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        logger.info("conversations.signals is not there; MCP resource updates are off")
        return
    signals.items_added.connect(on_items_added, dispatch_uid="mcp_server.on_items_added")
