"""Ordering SGLang release numbers (PEP 440: ``0.5.6.post2``, ``0.5.9rc1``) without packaging."""

from __future__ import annotations

import re

_VERSION = re.compile(
    r"^v?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|rc)(\d*))?(?:[-_.]?post(\d*))?(?:[-_.]?dev(\d*))?(?:\+.*)?$"
)
_PRE = {"a": 0, "b": 1, "rc": 2}


def version_key(version: str) -> tuple[int, ...] | None:
    """A sort key of a PEP 440 release such as ``0.5.6.post2`` or ``0.5.9rc1``; None if odd."""
    m = _VERSION.match(version.strip().lower())
    if m is None:
        return None
    release, pre, pre_n, post, dev = m.groups()
    numbers = [int(n) for n in release.split(".")]
    numbers += [0] * (4 - len(numbers))
    # a release's dev builds sort first, then its pre-releases, then the release itself
    if pre:
        stage = (_PRE[pre], int(pre_n or 0))
    else:
        stage = (-1, 0) if dev is not None and post is None else (3, 0)
    return (
        *numbers,
        *stage,
        int(post or 0) if post is not None else -1,
        0 if dev is None else -1,
    )


def at_least(version: str, first: str) -> bool:
    """Whether ``version`` is ``first`` or later; an unreadable version counts as older."""
    have, want = version_key(version), version_key(first)
    return have is not None and want is not None and have >= want
