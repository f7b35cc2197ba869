from __future__ import annotations

# The live gateway, the fake upstream and the strict SDK client of the inference tests.
from inference.tests.conftest import (  # noqa: F401 -- pytest fixtures, used by name
    _fresh_registry,
    live_gateway,
    make_upstream,
    project_key,
    provider,
    sdk,
    upstream,
)
