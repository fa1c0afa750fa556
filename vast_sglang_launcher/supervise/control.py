"""What the outside world asks of a running launcher (stop, hurry, restart with a fresh plan)
and the one event that every wait of the supervisor wakes on."""

from __future__ import annotations

import asyncio
import signal
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

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.on_hup)

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


SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def hold_signals() -> None:
    """Block SIGTERM, SIGINT and SIGHUP: called once the tree is gone, before the event loop
    closes (closing it removes its handlers, and SIGHUP's default action would kill the
    launcher on its way out). A signal that comes meanwhile waits for `ignore_signals`."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def ignore_signals(log: Any) -> None:
    """After the loop: the launcher is stopping; every further signal is logged, ignored."""

    def ignore(signum: int, _frame: object) -> None:
        log.info(f"received {signal.Signals(signum).name} while stopping: ignored")

    for sig in SIGNALS:
        signal.signal(sig, ignore)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
