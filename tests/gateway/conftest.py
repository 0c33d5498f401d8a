"""Fixtures of the gateway's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway import registry
from tests.gateway import counter_source


@pytest.fixture
def counter() -> Iterator[None]:
    """The trivial `[[sources.counter]]` kind (counter_source.py) registered for one test."""
    registry.register(counter_source.KIND)
    try:
        yield
    finally:
        registry.unregister(counter_source.KIND)
