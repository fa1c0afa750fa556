"""The server's state machine: status.json's vocabulary and the edges between its states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vast_sglang_launcher.logs import get_logger
from vast_sglang_launcher.supervise.lifecycle import Lifecycle
from vast_sglang_launcher.supervise.states import (
    TRANSITIONS,
    IllegalTransition,
    ServerState,
    check_transition,
)
from vast_sglang_launcher.supervise.status import STATES
from vast_sglang_launcher.supervise.status_writer import StatusFile


def test_status_json_keeps_its_state_names() -> None:
    assert STATES == (
        "waiting_provisioning",
        "starting",
        "ready",
        "unhealthy",
        "backoff",
        "stopping",
        "stopped",
        "failed",
    )


def test_every_state_is_reachable_and_only_the_ends_are_final() -> None:
    seen: set[ServerState] = set()
    todo: list[ServerState | None] = [None]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(ServerState)
    finals = {s for s in ServerState if not TRANSITIONS[s]}
    assert finals == {ServerState.STOPPED, ServerState.FAILED}
    # Every state can still be stopped or given up.
    for state in set(ServerState) - finals:
        assert {ServerState.STOPPED, ServerState.FAILED} <= TRANSITIONS[state]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (ServerState.BACKOFF, ServerState.READY),
        (ServerState.STOPPED, ServerState.STARTING),
        (ServerState.FAILED, ServerState.READY),
        (None, ServerState.READY),
        (ServerState.WAITING_PROVISIONING, ServerState.READY),
    ],
)
def test_a_transition_off_the_table_is_refused(old: ServerState | None, new: ServerState) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(old, new)


def test_lifecycle_writes_each_state_with_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    life = Lifecycle(StatusFile(path, launcher_pid=1), get_logger("test"))
    life.to(ServerState.STARTING, message="checking the port")
    life.note(server_pid=42)
    data = json.loads(path.read_text())
    assert data["state"] == "starting" and data["server_pid"] == 42 and data["since"]
    life.to(ServerState.READY, message="serving")
    assert json.loads(path.read_text())["state"] == "ready"
    with pytest.raises(IllegalTransition, match="ready -> waiting_provisioning"):
        life.to(ServerState.WAITING_PROVISIONING)
    assert json.loads(path.read_text())["state"] == "ready"
