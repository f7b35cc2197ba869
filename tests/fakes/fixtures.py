"""pytest fixtures for the fake model server.

Make them available to a test package with, in its conftest.py::

    from tests.fakes.fixtures import fake_upstream, make_fake_upstream  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream

MakeFakeUpstream = Callable[..., FakeUpstream]


@pytest.fixture
def make_fake_upstream() -> Iterator[MakeFakeUpstream]:
    """Factory: ``make_fake_upstream(models=("a", "b"), behaviour="text", **options)`` starts a new
    FakeUpstream on its own port; all of them are stopped when the test ends."""
    started: list[FakeUpstream] = []

    def make(models: Sequence[str] = ("fake-model",), **options: Any) -> FakeUpstream:
        upstream = FakeUpstream(models, **options).start()
        started.append(upstream)
        return upstream

    yield make
    for upstream in started:
        upstream.stop()


@pytest.fixture
def fake_upstream(make_fake_upstream: MakeFakeUpstream) -> FakeUpstream:
    """A started FakeUpstream serving ``fake-model`` and ``fake-reasoner``, behaviour "text"."""
    return make_fake_upstream(("fake-model", "fake-reasoner"))
