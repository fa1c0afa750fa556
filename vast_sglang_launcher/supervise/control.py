"""What happens to a running launcher, as events in one queue: the signals it receives
(stop, hurry, restart) and what its server does (prints its ready line, exits, answers a
probe). The supervisor and the attempt take them one at a time (`Control.next`) and hand
each to one handler.

The model is gunicorn's arbiter (a signal handler only queues the signal and wakes the loop
through a self-pipe), made async-signal-safe the way asyncio's own signal handling is: the
queue *is* the self-pipe. The interpreter's C-level handler writes each signal's number into
the wake-up fd (`signal.set_wakeup_fd`); the loop reads the numbers and turns each into a
request, in one place (`_dispatch_signal`). The Python-level handler does nothing while the
loop runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import signal
import socket
from dataclasses import dataclass
from typing import Any


class Kind(enum.Enum):
    STOP = "stop"
    """The first SIGTERM/SIGINT: stop the server and exit 0."""
    RELOAD = "reload"
    """SIGHUP: restart the server with a fresh plan."""
    READY_LINE = "ready_line"
    """The server printed its ready line: probe now instead of after the period."""
    EXITED = "exited"
    """The server's main process ended."""
    PROBE = "probe"
    """A probe of the server was answered (or failed); ``detail`` is its result."""


SERVER_KINDS = frozenset({Kind.READY_LINE, Kind.EXITED, Kind.PROBE})
"""Events about one server: those of an earlier server mean nothing to the next one."""


@dataclass(frozen=True)
class Event:
    kind: Kind
    detail: Any = None


class Control:
    """The launcher's one event queue, fed by its signal handlers and its server.

    Its asyncio events bind to the loop that first waits on them (Python >= 3.10,
    `asyncio.mixins._LoopBoundMixin`): it may be made before `asyncio.run`, used in one loop.
    """

    def __init__(self, log: Any) -> None:
        self.log = log
        self.stop_signal: str | None = None
        """The name of the first SIGTERM/SIGINT, once one arrived: the launcher is stopping."""
        self.stop_event = asyncio.Event()
        """Set with `stop_signal`, for the waits of other capabilities (provisioning, weights)."""
        self.hurry = asyncio.Event()
        """A second SIGTERM/SIGINT: kill the server now instead of waiting for it to drain."""
        self._events: collections.deque[Event] = collections.deque()
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup_socks: tuple[socket.socket, socket.socket] | None = None
        self._on_signal_number = {
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
            signal.SIGHUP: self._on_hup,
        }

    # --- signals ------------------------------------------------------------------------

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle SIGTERM, SIGINT and SIGHUP for the rest of the process's life.

        Plain handlers, not `loop.add_signal_handler`: closing the loop would put the default
        actions back, and a `restart` (SIGHUP) in the last moments of a stop would then kill
        the launcher (supervisord: "not expected"). Once the loop is closed every signal is
        logged and ignored. The signal numbers come through the wake-up fd, also when another
        thread happened to receive the signal.
        """
        self._loop = loop
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wakeup_socks = (reader, writer)
        loop.add_reader(reader.fileno(), self._take_signals, reader)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for sig in self._on_signal_number:
            signal.signal(sig, self._after_the_loop)

    def _after_the_loop(self, signum: int, _frame: object) -> None:
        """The Python-level handler: nothing while the loop runs (the number is in the
        wake-up fd already); after it, the signal is logged and ignored."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.log.info(f"received {signal.Signals(signum).name} while stopping: ignored")

    def _take_signals(self, sock: socket.socket) -> None:
        """In the loop, woken by the wake-up fd: each signal number in it to its handler."""
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                received += chunk
        for signum in received:
            if signum in self._on_signal_number:
                self._dispatch_signal(signum)

    def _dispatch_signal(self, signum: int) -> None:
        sig = signal.Signals(signum)
        self._on_signal_number[sig](sig)

    def uninstall(self) -> None:
        """Default actions back for SIGTERM and SIGINT (a launcher that failed with a bug
        pauses before it exits; that pause must stay stoppable). SIGHUP stays ignored."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)

    def _on_stop(self, sig: signal.Signals) -> None:
        if self.stop_signal is None:
            self.stop_signal = sig.name
            self.log.info(f"received {sig.name}: stopping")
            self.stop_event.set()
            self.post(Kind.STOP, sig.name)
        elif not self.hurry.is_set():
            self.log.warning(f"received {sig.name} again: killing the server now")
            self.hurry.set()

    def _on_hup(self, _sig: signal.Signals) -> None:
        if self.stop_signal is not None:
            self.log.info("received SIGHUP while stopping: ignored")
            return
        self.log.info("received SIGHUP: restarting the server with a fresh plan")
        self.post(Kind.RELOAD)

    # --- the queue ----------------------------------------------------------------------

    def post(self, kind: Kind, detail: Any = None) -> None:
        """Queue an event (from the loop's thread: signals come through `_take_signals`)."""
        self._events.append(Event(kind, detail))
        self._arrived.set()

    def discard(self, kinds: frozenset[Kind]) -> None:
        """Drop queued events of these kinds (they concern what no longer is)."""
        kept = [e for e in self._events if e.kind not in kinds]
        self._events.clear()
        self._events.extend(kept)

    async def next(self, timeout: float | None) -> Event | None:
        """The oldest queued event, waiting up to ``timeout`` seconds (None: no limit) for
        one; None when the time is up first."""
        if not self._events:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return self._events.popleft()
