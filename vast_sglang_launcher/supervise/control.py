"""What the outside world asks of a running launcher (stop, hurry, restart with a fresh plan)
and the one event that every wait of the supervisor wakes on."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from typing import Any


class Control:
    """Signal handlers turn into requests here; waits end early when one arrives.

    Create it inside the running loop (Python 3.10 binds events to the loop at creation).
    """

    def __init__(self, log: Any) -> None:
        self.log = log
        self.stop_signal: str | None = None
        """The name of the first SIGTERM/SIGINT: stop the server and exit 0."""
        self.reload_requested = False
        """SIGHUP: restart the server with a fresh plan (kept while the plan is made)."""
        self.ready_line = False
        """The server printed its ready line: probe now instead of after the period."""
        self.wakeup = asyncio.Event()
        self.stop_event = asyncio.Event()
        self.hurry = asyncio.Event()
        """A second SIGTERM/SIGINT: kill the server now instead of waiting for it to drain."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup_socks: tuple[socket.socket, socket.socket] | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle SIGTERM, SIGINT and SIGHUP for the rest of the process's life.

        Plain handlers, not `loop.add_signal_handler`: closing the loop would put the default
        actions back, and a `restart` (SIGHUP) in the last moments of a stop would then kill
        the launcher (supervisord: "not expected"). Once the loop is closed every signal is
        logged and ignored. A wake-up fd read by the loop makes it see a signal that another
        thread happened to receive.
        """
        self._loop = loop
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wakeup_socks = (reader, writer)
        loop.add_reader(reader.fileno(), _drain, reader)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        sig = signal.Signals(signum)
        loop = self._loop
        if loop is None or loop.is_closed():
            self.log.info(f"received {sig.name} while stopping: ignored")
            return
        if sig is signal.SIGHUP:
            loop.call_soon_threadsafe(self.on_hup)
        else:
            loop.call_soon_threadsafe(self.on_stop, sig)

    def uninstall(self) -> None:
        """Default actions back for SIGTERM and SIGINT (a launcher that failed with a bug
        pauses before it exits; that pause must stay stoppable). SIGHUP stays ignored."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)

    def on_stop(self, sig: signal.Signals) -> None:
        if self.stop_signal is None:
            self.stop_signal = sig.name
            self.log.info(f"received {sig.name}: stopping")
            self.stop_event.set()
            self.wakeup.set()
        elif not self.hurry.is_set():
            self.log.warning(f"received {sig.name} again: killing the server now")
            self.hurry.set()

    def on_hup(self) -> None:
        if self.stop_signal is not None:
            self.log.info("received SIGHUP while stopping: ignored")
            return
        self.log.info("received SIGHUP: restarting the server with a fresh plan")
        self.reload_requested = True
        self.wakeup.set()

    def on_ready_line(self) -> None:
        self.ready_line = True
        self.wakeup.set()

    def on_exit(self) -> None:
        self.wakeup.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep; False when woken early (a signal, the server's exit, its ready line)."""
        if self.wakeup.is_set():
            return False
        try:
            await asyncio.wait_for(self.wakeup.wait(), seconds)
        except asyncio.TimeoutError:
            return True
        return False


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(4096):
            pass
