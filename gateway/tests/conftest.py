"""The live gateway and fake upstream fixtures, shared with the inference tests."""

from __future__ import annotations

from inference.tests.conftest import (  # noqa: F401 -- pytest finds fixtures by name
    _fresh_registry,
    live_gateway,
    make_upstream,
    project_key,
    provider,
    upstream,
)
