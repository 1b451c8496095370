"""Shared fixtures of the two4two tests."""

from __future__ import annotations

import pytest
from two4two_fakes import FakeRenderer


@pytest.fixture
def fake_renderer() -> FakeRenderer:
    """A renderer that follows the render contract without Blender."""
    return FakeRenderer()
