"""The PostgreSQL backend of the primary when read replicas are configured: once a transaction
that wrote has committed, the router records the primary's WAL position (gateway.db_router), so
later reads of the same principal wait for a replica that has replayed it.

A write is known from the router (`db_for_write` marks the connection) and confirmed here when
its statement has run; it is recorded at once in autocommit mode, else once the transaction has
committed, before its on-commit callbacks run (a task they enqueue carries the position).
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gateway_write_pending = False  # the router routed a write here; not yet executed
        self.gateway_commit_pending = False  # a write ran inside the open transaction
        self.execute_wrappers.append(self._after_execute)

    def _after_execute(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        if self.gateway_write_pending:
            self.gateway_write_pending = False
            if self.in_atomic_block or not self.autocommit:
                self.gateway_commit_pending = True
            else:
                from gateway.db_router import record_write

                record_write()
        return result

    def _set_autocommit(self, autocommit: bool) -> None:
        super()._set_autocommit(autocommit)  # type: ignore[misc]
        # Back in autocommit after a commit (not a rollback): record before the on-commit
        # callbacks, which Django runs right after this.
        if autocommit and self.gateway_commit_pending and self.run_commit_hooks_on_set_autocommit_on:
            self.gateway_commit_pending = False
            from gateway.db_router import record_write

            record_write()

    def rollback(self) -> None:
        super().rollback()
        self.gateway_commit_pending = False

    def close(self) -> None:
        super().close()
        self.gateway_write_pending = self.gateway_commit_pending = False
