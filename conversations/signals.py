"""`items_added`: sent after the transaction that added items to a conversation commits.

Keyword arguments: `conversation` (the Conversation) and `items` (list of Item, in order).
Sent from every path that adds items (the REST API, conversation-aware chat, and
services.items_create for other apps). Receivers run after commit, so they see the rows;
their exceptions are logged by `send_robust` and never undo the write.
"""

from __future__ import annotations

from django.dispatch import Signal

items_added = Signal()
