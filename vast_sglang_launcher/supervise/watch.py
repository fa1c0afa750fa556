"""The concerns of watching one running server, each on its own: the startup deadline, where
to probe (`/ready`, else `/health`), when the next probe is due and which answer is current,
and the liveness count. `attempt.Attempt` routes the events of its server to them; none of
them does I/O or reads a clock (the caller passes ``now``), so each is tested alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .probes import ProbeResult, health_url, readiness_path


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.3g}"


@dataclass(frozen=True)
class StartupDeadline:
    """LAUNCHER_STARTUP_TIMEOUT seconds from the spawn to the first good readiness probe."""

    at: float
    timeout: float

    @classmethod
    def after(cls, started: float, timeout: float) -> StartupDeadline:
        return cls(started + timeout, timeout)

    def passed(self, now: float) -> bool:
        return now >= self.at

    def reason(self, url: str, last: ProbeResult | None) -> str:
        answered = (
            f"the last probe of {url} got {last.describe()}"
            if last is not None
            else f"no probe of {url} was answered"
        )
        return (
            f"the server was not ready within {fmt_seconds(self.timeout)} s "
            f"(LAUNCHER_STARTUP_TIMEOUT); {answered}"
        )


class ProbeUrls:
    """Readiness on `/ready` where the release has it, liveness on `/health`."""

    def __init__(self, host: str, port: int, release: str, serves_api: bool) -> None:
        self.live = health_url(host, port)
        self.current = health_url(host, port, readiness_path(release, serves_api))

    def not_served(self, result: ProbeResult) -> bool:
        """True (and readiness moves to `/health`) when `/ready` answered 404: the release
        is older than the option table said (the table is a guess when the installed version
        is unknown)."""
        if result.status == 404 and self.current != self.live:
            self.current = self.live
            return True
        return False

    def to_liveness(self) -> None:
        self.current = self.live


class ProbeSchedule:
    """When the next probe is due, and which probe's answer counts.

    One probe at a time. Each probe gets a number; an answer with another number (of a probe
    dropped meanwhile) is stale. A probe sent before the server printed its ready line is
    dropped when the line arrives (a `/health` sent during loading may hang for its whole
    timeout) and a fresh one is due at once.
    """

    def __init__(self, now: float) -> None:
        self.due: float | None = now
        """When to send the next probe; None while one is in flight."""
        self.number = 0
        self.in_flight = False
        self.sent_after_ready_line = False
        self.ready_line = False

    def sent(self) -> int:
        """A probe goes out now: its number."""
        self.number += 1
        self.in_flight = True
        self.due = None
        self.sent_after_ready_line = self.ready_line
        return self.number

    def answered(self, number: int, next_due: float) -> bool:
        """True when ``number`` is the probe in flight; the next one is then due at
        ``next_due``."""
        if not self.in_flight or number != self.number:
            return False
        self.in_flight = False
        self.due = next_due
        return True

    def dropped(self, now: float) -> None:
        """The probe in flight was dropped (its answer will never come): the next is due
        now, so that watching again (after a refused restart request) probes again."""
        if self.in_flight:
            self.in_flight = False
            self.due = now

    def on_ready_line(self, now: float) -> bool:
        """The server printed its ready line; True when the probe in flight is to be
        dropped (a fresh one is due at once)."""
        self.ready_line = True
        if self.in_flight and self.sent_after_ready_line:
            return False
        drop = self.in_flight
        self.in_flight = False
        self.due = now
        return drop


class Health(enum.Enum):
    HEALTHY = "healthy"
    RECOVERED = "recovered"
    """Healthy again after failed probes."""
    FAILING = "failing"
    DEAD = "dead"
    """LAUNCHER_LIVENESS_FAILURES probes failed in a row."""


class Liveness:
    """Failed liveness probes in a row, against LAUNCHER_LIVENESS_FAILURES."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.failures = 0

    def record(self, result: ProbeResult) -> Health:
        if result.ok:
            recovered = self.failures > 0
            self.failures = 0
            return Health.RECOVERED if recovered else Health.HEALTHY
        self.failures += 1
        return Health.DEAD if self.failures >= self.allowed else Health.FAILING
