"""When to start the server again, and when to give up: a pure decision, no I/O, no clock.

- A server that fails after it was ready is restarted, with a delay that doubles on each
  restart (``backoff_initial`` .. ``backoff_max``) and starts over after it served for
  ``backoff_reset`` seconds.
- A server that fails before it was ever ready is retried ``start_retries`` times in a row
  (with the same growing delays); the next failure gives up.
- A bad argument (exit status 2 before ready), a command that cannot be executed, and a
  failure that the server's last lines show to be permanent (`failure_hints`: no GPU, an
  unknown architecture, a missing or gated model, heads that --tp does not divide, ...) are
  not retried at all: nothing changes until the configuration does.
- Out of GPU memory is one of those only while the plan has never served (``has_served``):
  the same weights and options run out the same way on every start. Once the server was
  ready, an out-of-memory is a load the next start may not meet, and it is restarted.

`RestartHistory` counts restarts over the last hour, to report a flapping server.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from enum import Enum

BAD_ARGUMENT_STATUS = 2  # argparse's exit status for an unknown / ambiguous option


class Failure(str, Enum):
    """How an attempt ended (other than by the launcher being asked to stop)."""

    EXITED = "exited"
    """The server process exited or was killed by a signal."""
    UNHEALTHY = "unhealthy"
    """Liveness probes failed in a row; the launcher stopped it."""
    STARTUP_TIMEOUT = "startup_timeout"
    """Not ready within LAUNCHER_STARTUP_TIMEOUT; the launcher stopped it."""
    PORT_BUSY = "port_busy"
    """The port was taken by another process; nothing was started."""
    NOT_EXECUTABLE = "not_executable"
    """The command could not be executed (not found, not permitted, no working directory)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one start of the server."""

    failure: Failure
    was_ready: bool = False
    ready_for: float = 0.0
    """Seconds it served after becoming ready."""
    returncode: int | None = None
    """The wait status (negative: killed by that signal); None when it did not exit itself."""
    permanent: bool = False
    """The server's last lines name a cause that a restart cannot fix."""


@dataclass(frozen=True)
class Verdict:
    """Restart after ``delay`` seconds, or give up (``give_up``) for ``reason``."""

    give_up: bool
    delay: float = 0.0
    reason: str = ""


class RestartPolicy:
    """Counts failures and turns each Outcome into a Verdict."""

    def __init__(
        self,
        backoff_initial: float,
        backoff_max: float,
        backoff_reset: float,
        start_retries: int,
    ) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = max(backoff_max, backoff_initial)
        self.backoff_reset = backoff_reset
        self.start_retries = start_retries
        self.restarts = 0
        """Restarts since the delay was last reset (the exponent of the delay)."""
        self.start_failures = 0
        """Failures in a row before the server became ready."""
        self.served = False
        """The server was ready at least once since the last ``reset``."""

    def reset(self) -> None:
        """Forget past failures (a person asked for a restart: the configuration changed)."""
        self.restarts = 0
        self.start_failures = 0
        self.served = False

    def has_served(self, outcome: Outcome) -> bool:
        """Whether the server was ever ready, ``outcome``'s start included: what tells an
        out-of-memory at start (permanent) from one while serving (`failure_hints`)."""
        return self.served or outcome.was_ready

    def next_delay(self) -> float:
        return float(min(self.backoff_initial * (2.0**self.restarts), self.backoff_max))

    def decide(self, outcome: Outcome) -> Verdict:
        if outcome.was_ready:
            self.served = True
            self.start_failures = 0
            if outcome.ready_for >= self.backoff_reset:
                self.restarts = 0
        else:
            if outcome.failure is Failure.NOT_EXECUTABLE:
                return Verdict(True, reason="the server cannot be started")
            if outcome.failure is Failure.EXITED and outcome.returncode == BAD_ARGUMENT_STATUS:
                return Verdict(True, reason="the server rejected its arguments (exit status 2)")
            if outcome.permanent:
                return Verdict(True, reason="the server failed in a way that a restart cannot fix")
            self.start_failures += 1
            if self.start_failures > self.start_retries:
                tries = self.start_failures
                return Verdict(
                    True,
                    reason=f"the server failed before becoming ready, {tries} "
                    f"time{'s' if tries != 1 else ''} in a row",
                )
        delay = self.next_delay()
        self.restarts += 1
        return Verdict(False, delay=delay)


class RestartHistory:
    """When the server was restarted (monotonic seconds, given by the caller): how many
    restarts fell in the last ``window`` seconds."""

    def __init__(self, window: float = 3600.0) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def record(self, now: float) -> int:
        self._times.append(now)
        return self.count(now)

    def count(self, now: float) -> int:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times)
