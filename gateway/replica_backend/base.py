"""The PostgreSQL backend for read-replica aliases: a replica that cannot be reached serves
nothing, the primary answers instead.

The router only sends reads to a replica its last probe found current, but a replica can go
away between two probes. Opening a connection to it then fails; rather than turn that into an
error for the request, this backend takes the replica out of rotation and opens a connection
to the primary for this one request. The primary always has what the replica would have had.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    _serving_from_primary = False

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        try:
            connection = super().get_new_connection(conn_params)
        except Exception as exc:  # psycopg's OperationalError, the pool's PoolTimeout
            from gateway.db_router import PRIMARY_FALLBACK_READS, monitor

            monitor.mark_unreachable(self.alias, type(exc).__name__)
            PRIMARY_FALLBACK_READS.labels("replica_unreachable").inc()
            primary = connections[DEFAULT_DB_ALIAS]
            connection = self.Database.connect(**primary.get_connection_params())
            self._serving_from_primary = True
            return connection
        self._serving_from_primary = False
        return connection

    def _close(self) -> None:
        if self._serving_from_primary and self.connection is not None:
            # Not one of the replica pool's connections: close it rather than hand it back.
            self._serving_from_primary = False
            connection, self.connection = self.connection, None
            with self.wrap_database_errors:
                connection.close()
            return
        super()._close()  # type: ignore[misc]
