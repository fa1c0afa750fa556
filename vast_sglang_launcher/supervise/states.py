"""The server's states as status.json shows them, and the transitions between them.

In the manner of supervisord's process states: one value at a time, changed only along the
edges below, so that a reader of status.json (or of this table) knows every path the
launcher can take. Standard library only: `status` imports it.
"""

from __future__ import annotations

from enum import Enum

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (`status` is cheap)
if TYPE_CHECKING:
    from collections.abc import Mapping


class ServerState(str, Enum):
    WAITING_PROVISIONING = "waiting_provisioning"
    """The provisioning marker exists: the server starts when it is gone."""
    STARTING = "starting"
    """Spawned (or about to be): loading weights, capturing graphs, until `/health` is 200."""
    READY = "ready"
    """`/health` answered 200; liveness probes follow."""
    UNHEALTHY = "unhealthy"
    """Ready before, but liveness probes fail (fewer than LAUNCHER_LIVENESS_FAILURES so far)."""
    BACKOFF = "backoff"
    """The server ended or was taken down; the next start waits for the restart delay."""
    STOPPING = "stopping"
    """SIGTERM sent to SGLang's main process (it drains); SIGKILL to the whole tree follows
    once LAUNCHER_STOP_TIMEOUT is spent."""
    STOPPED = "stopped"
    """Stopped on request, or never started (no model): the launcher exits 0."""
    FAILED = "failed"
    """Given up (or no plan could be made): the launcher exits 78."""


S = ServerState

TRANSITIONS: Mapping[ServerState | None, frozenset[ServerState]] = {
    # None: the launcher has just started and written nothing yet.
    None: frozenset({S.WAITING_PROVISIONING, S.STARTING, S.STOPPING, S.STOPPED, S.FAILED}),
    S.WAITING_PROVISIONING: frozenset({S.STARTING, S.STOPPED, S.FAILED}),
    S.STARTING: frozenset({S.READY, S.STOPPING, S.BACKOFF, S.STOPPED, S.FAILED}),
    # READY -> STARTING: a restart on request (SIGHUP) after the server had already exited.
    S.READY: frozenset({S.UNHEALTHY, S.STOPPING, S.BACKOFF, S.STARTING, S.STOPPED, S.FAILED}),
    S.UNHEALTHY: frozenset({S.READY, S.STOPPING, S.BACKOFF, S.STARTING, S.STOPPED, S.FAILED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.FAILED}),
    S.STOPPING: frozenset({S.WAITING_PROVISIONING, S.STARTING, S.BACKOFF, S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A launcher bug: a state change that the table above does not allow."""


def check_transition(old: ServerState | None, new: ServerState) -> None:
    """Raise IllegalTransition unless ``old -> new`` is an edge (or no change at all)."""
    if old is not new and new not in TRANSITIONS[old]:
        raise IllegalTransition(f"{old.value if old else 'start'} -> {new.value}")
