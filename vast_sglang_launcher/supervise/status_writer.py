"""Writing status.json: on every change, atomically (tmp + os.replace, mode 0600), with the
serving marker beside it. `status` reads it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import write_atomic
from ..redact import argv_secrets
from ..timestamps import iso
from .status import EMPTY, SERVING_MARKER, STATES, masked

SERVING_STATES = ("ready", "unhealthy", "stopping")
"""A server that was ready keeps its requests while probes fail and while it drains."""


class StatusFile:
    """The launcher's status document; ``update`` rewrites the file (tmp + os.replace,
    mode 0600). Secret option values of the argv are masked in every field."""

    def __init__(self, path: Path, secrets: Sequence[str] = (), **initial: Any) -> None:
        self.path = path
        self.data: dict[str, Any] = {**EMPTY, **initial}
        self.error: str | None = None
        self._fixed = list(secrets)  # the settings' secrets (redact.settings_secrets)
        self._secrets: list[str] = argv_secrets(self.data.get("argv") or [])

    def update(self, **changes: Any) -> None:
        if isinstance(changes.get("argv"), list):
            self._secrets = argv_secrets(changes["argv"])
        state = changes.get("state")
        if state is not None:
            assert state in STATES, state
            if state != self.data.get("state"):
                changes.setdefault("since", iso(time.time()))
        self.data.update(changes)
        self.data["updated_at"] = iso(time.time())
        self.write()

    def write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            shown = masked(self.data, [*self._fixed, *self._secrets])
            write_atomic(self.path, json.dumps(shown, indent=1) + "\n", 0o600)
            self._mark_serving()
            self.error = None
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"

    def _mark_serving(self) -> None:
        """The serving marker follows the state; a stopping server that never became ready
        is not serving (the edge's fallback on a refused connection covers that too)."""
        marker = self.path.parent / SERVING_MARKER
        state = self.data.get("state")
        if state in SERVING_STATES and (state != "stopping" or self.data.get("ready_at")):
            marker.touch(0o600)
        else:
            marker.unlink(missing_ok=True)

    def restore(self) -> bool:
        """Write the file again when it is gone (deleted by hand or by a cleaner: the
        HEALTHCHECK reads it); True when it was missing."""
        if os.path.lexists(self.path):
            return False
        self.write()
        return True

    @property
    def state(self) -> str | None:
        value = self.data.get("state")
        return value if isinstance(value, str) else None
