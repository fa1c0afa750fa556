"""The server's life cycle as the launcher records it: one ServerState, changed only along
`states.TRANSITIONS`, mirrored into status.json with the fields that go with it."""

from __future__ import annotations

from typing import Any

from .states import ServerState, check_transition
from .status_writer import StatusFile


class Lifecycle:
    def __init__(self, status: StatusFile, log: Any) -> None:
        self.status = status
        self.log = log
        self.state: ServerState | None = None
        self._warned = False

    def to(self, state: ServerState, **fields: Any) -> None:
        """Enter ``state`` (IllegalTransition when the table has no such edge)."""
        check_transition(self.state, state)
        self.state = state
        self.note(state=state.value, **fields)

    def restore(self) -> None:
        """Rewrite status.json if it was deleted (checked on each liveness probe)."""
        if self.status.restore():
            self.log.warning(f"{self.status.path} was deleted; written again")

    def note(self, **fields: Any) -> None:
        """Record fields of status.json without a change of state."""
        self.status.update(**fields)
        if self.status.error and not self._warned:
            self._warned = True  # a full or read-only run dir: say it once, keep serving
            self.log.warning(self.status.error)
