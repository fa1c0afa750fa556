"""Wait for a marker file to disappear: inotify through ctypes on Linux, else a short poll.

Used for the provisioning gate: while ``$LAUNCHER_MARKER_DIR/.provisioning`` exists the
server must not start. The marker's directory is watched for deletions and renames, so the
launcher reacts within milliseconds; the file is re-checked every few seconds anyway (and
every half second when inotify is unavailable), so a missed event only costs a short delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path

IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
_MASK = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF

POLL_INTERVAL = 0.5
"""Seconds between checks when inotify is unavailable."""
RECHECK_INTERVAL = 5.0
"""Seconds between checks even with inotify (a safety net for missed events)."""


class DirectoryWatch:
    """An inotify descriptor watching one directory's entries being removed or renamed."""

    def __init__(self, directory: Path) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init1 = libc.inotify_init1
            add_watch = libc.inotify_add_watch
        except (OSError, AttributeError) as exc:
            raise OSError(errno.ENOSYS, f"inotify unavailable: {exc}") from None
        add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = int(init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        if int(add_watch(fd, os.fsencode(directory), _MASK)) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, os.strerror(err))
        self.fd = fd

    def drain(self) -> None:
        """Discard pending events (the caller re-checks the file itself)."""
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return
            except OSError:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


async def _first(events: list[asyncio.Event], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def wait_until_gone(
    path: Path,
    stop: asyncio.Event,
    *,
    poll_interval: float = POLL_INTERVAL,
    recheck_interval: float = RECHECK_INTERVAL,
    heartbeat: Callable[[float], None] | None = None,
    heartbeat_every: float = 60.0,
    use_inotify: bool = True,
    abandoned: Callable[[], bool] | None = None,
) -> bool:
    """Return True once ``path`` does not exist (or ``abandoned()`` says its owner is gone),
    False as soon as ``stop`` is set."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    watch: DirectoryWatch | None = None
    if use_inotify:
        try:
            watch = DirectoryWatch(path.parent)
        except OSError:
            watch = None
    if watch is not None:
        w = watch

        def readable() -> None:
            w.drain()
            changed.set()

        loop.add_reader(w.fd, readable)
    interval = recheck_interval if watch is not None else poll_interval
    started = last_beat = loop.time()
    try:
        while os.path.lexists(path) and not (abandoned is not None and abandoned()):
            if stop.is_set():
                return False
            await _first([changed, stop], interval)
            changed.clear()
            if heartbeat is not None and loop.time() - last_beat >= heartbeat_every:
                last_beat = loop.time()
                heartbeat(last_beat - started)
        return not stop.is_set()
    finally:
        if watch is not None:
            loop.remove_reader(watch.fd)
            watch.close()
