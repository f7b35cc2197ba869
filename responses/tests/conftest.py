from __future__ import annotations

from inference.tests.conftest import (  # noqa: F401 -- pytest fixtures, used by name
    _fresh_registry,
    live_gateway,
    make_upstream,
    project_key,
    provider,
    sdk,
    upstream,
)
