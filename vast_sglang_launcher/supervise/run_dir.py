"""The run directory that one launcher owns: its lock (launcher.pid), the record of the
server it started (server.json), and the clean-up of a server that an earlier launcher left.

launcher.pid holds the owner's pid and an exclusive flock for the owner's whole life: the
kernel drops the lock when the owner dies, however it dies, so a stale file never blocks a
start, and `restart` / a second `run` can tell whether a launcher is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError
from ..files import write_atomic
from .process import (
    Tree,
    group_members,
    recorded_or_gone,
    same_process,
    started_after,
)

LAUNCHER_PID_FILE = "launcher.pid"
SERVER_RECORD_FILE = "server.json"


@dataclass(frozen=True)
class ServerRecord:
    """server.json: what identifies a server this launcher (or an earlier one) started."""

    pid: int
    pgid: int
    create_time: float
    launcher_pid: int
    argv: list[str]

    def save(self, path: Path) -> None:
        # 0600: the argv holds the server's secret options (--api-key ...) unmasked.
        write_atomic(path, json.dumps(asdict(self), indent=1) + "\n", 0o600)

    @classmethod
    def load(cls, path: Path) -> ServerRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(
                pid=int(data["pid"]),
                pgid=int(data["pgid"]),
                create_time=float(data["create_time"]),
                launcher_pid=int(data["launcher_pid"]),
                argv=[str(a) for a in data.get("argv", [])],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running_launcher(run_dir: Path) -> int | None:
    """The pid of the launcher holding ``run_dir``'s lock, or None when none runs."""
    pid_file = run_dir / LAUNCHER_PID_FILE
    try:
        fd = os.open(pid_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_pid(pid_file)  # locked: a launcher runs
    else:
        return None
    finally:
        os.close(fd)


class RunDir:
    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        self.pid = pid
        self._fd: int | None = None

    @property
    def record_path(self) -> Path:
        return self.path / SERVER_RECORD_FILE

    def claim(self) -> None:
        """Create the directory and take its lock; ConfigError (one line) when we cannot."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"LAUNCHER_RUN_DIR={self.path} cannot be created: {exc.strerror or exc}; "
                "fix or set LAUNCHER_RUN_DIR"
            ) from None
        pid_file = self.path / LAUNCHER_PID_FILE
        try:
            fd = os.open(pid_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"LAUNCHER_RUN_DIR={self.path} is not writable: {exc.strerror or exc}; "
                "fix or set LAUNCHER_RUN_DIR"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            other = read_pid(pid_file)
            raise ConfigError(
                f"another launcher is already running (pid {other}, LAUNCHER_RUN_DIR="
                f"{self.path}); stop it first, or use `restart`"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{self.pid}\n".encode())
        except OSError as exc:
            os.close(fd)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise ConfigError(
                f"LAUNCHER_RUN_DIR={self.path}: cannot write {LAUNCHER_PID_FILE}: "
                f"{exc.strerror or exc}; "
                + ("free some space on its disk" if full else "fix it")
                + " or set LAUNCHER_RUN_DIR"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                (self.path / LAUNCHER_PID_FILE).unlink()
            os.close(self._fd)
            self._fd = None

    def record_server(self, record: ServerRecord) -> None:
        """Remember the server's group, so that a later launcher can stop it (OSError)."""
        record.save(self.record_path)

    def forget_server(self) -> None:
        with contextlib.suppress(OSError):
            self.record_path.unlink()

    async def stop_leftover(
        self,
        stop_timeout: float,
        hurry: asyncio.Event,
        announce: Callable[[list[int]], None],
    ) -> None:
        """Stop a server that an earlier launcher recorded and left running; ``announce``
        gets its pids first."""
        record = ServerRecord.load(self.record_path)
        if record is None:
            self.forget_server()
            return
        leader = same_process(record.pid, record.create_time)
        members = group_members(record.pgid)
        if leader is None and not recorded_or_gone(record.pgid, record.create_time):
            # The group id now names another process's group: not ours to touch. (A zombie
            # leader, not yet reaped, is still the recorded one: its group is swept.)
            members = []
        # Members of the recorded group started after its leader (a pid is not reused while a
        # group of that id has members, so these are the old server's processes).
        members = [p for p in members if started_after(p, record.create_time)]
        if leader is not None or members:
            announce(sorted({p.pid for p in members} | ({leader.pid} if leader else set())))
            tree = Tree(record.pgid, [leader] if leader else [], leader=leader)
            await tree.terminate(stop_timeout, hurry=hurry)
        self.forget_server()
