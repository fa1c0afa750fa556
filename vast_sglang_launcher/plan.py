"""The launch plan: a pure function from what was gathered to the exact argv and env."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Decision:
    """One thing the launcher chose: what, the value, where it came from, and why."""

    what: str
    value: str
    source: str
    why: str


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start the server; nothing in it is decided later."""

    argv: list[str]
    env: dict[str, str]
    """The whole environment of the server process."""
    cwd: Path
    host: str
    port: int
    model: str | None
    decisions: list[Decision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
