"""Primary/replica routing.

Writes go to the primary. Reads go to a random replica, except:
- inside a transaction (the transaction's own writes are only on the primary), and
- after a write in the same request or task (the replica may not have caught up yet).
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from gateway import context


def _note_write() -> None:
    state = context.current()
    if state is not None:
        state["wrote"] = True


def _must_read_primary() -> bool:
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return True
    state = context.current()
    return bool(state and state.get("wrote"))


class PrimaryReplicaRouter:
    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        replicas = settings.DATABASE_REPLICAS
        if not replicas or not settings.DATABASE_READ_FROM_REPLICAS or _must_read_primary():
            return DEFAULT_DB_ALIAS
        return random.choice(replicas)  # noqa: S311 -- load spreading, not security

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        _note_write()
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # every alias holds the same data

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS
