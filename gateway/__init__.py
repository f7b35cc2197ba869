"""The gateway's project package.

The Celery app is created when Django loads the apps (gateway.apps), not when this package is
imported: `python -m gateway.supervisor` and `python -m gateway.server`'s parent import this
package and need neither Celery nor Django's apps (each would cost them tens of MB at rest).
`celery -A gateway` finds the app in gateway.celery.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        from gateway.celery import app

        return app
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
