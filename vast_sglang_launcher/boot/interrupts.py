"""Turn SIGTERM and SIGINT into an exception, so that boot steps clean up when stopped."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """Raised in the main thread when the launcher receives SIGTERM or SIGINT.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """The status a shell reports for a process killed by this signal."""
        return 128 + self.signum


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGINT raises Interrupted; later ones are ignored
    so that the cleanup the first one started is not cut short. Main thread only."""
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
