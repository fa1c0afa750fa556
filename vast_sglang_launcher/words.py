"""Splitting user text into words the way a POSIX shell would, without ever running one."""

from __future__ import annotations

import shlex

from .errors import ConfigError


def split_words(text: str, source: str, *, comments: bool = True) -> list[str]:
    """Split into words like a POSIX shell (quotes, escapes, `#` comments), never run one."""
    try:
        return shlex.split(text, comments=comments, posix=True)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: cannot split into words ({exc}); fix the quoting in {source}: "
            "balance the quotes or escape them"
        ) from None
