"""tests/image: the `image` fixture (image_rig) and the xdist_group mark, which keeps the
image test in one pytest-xdist worker of its own (`--dist loadgroup`)."""

from __future__ import annotations

import pytest
from image_rig import image

__all__ = ["image"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run in one pytest-xdist worker")
