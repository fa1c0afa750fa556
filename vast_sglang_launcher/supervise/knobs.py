"""supervise's settings part (`run`): probes, restarts and stops.

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..knob_types import Int, Seconds


class SuperviseKnobs(BaseModel):
    """supervise's knobs."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

    startup_timeout: Seconds = Field(3600.0, validation_alias="LAUNCHER_STARTUP_TIMEOUT")
    """Seconds a start may take (download, load, warm-up) before it counts as failed."""

    startup_period: Seconds = Field(0.25, validation_alias="LAUNCHER_STARTUP_PERIOD")
    """Seconds between readiness probes while the server starts."""

    liveness_period: Seconds = Field(15.0, validation_alias="LAUNCHER_LIVENESS_PERIOD")
    """Seconds between `/health` probes once the server is ready."""

    liveness_timeout: Seconds = Field(30.0, validation_alias="LAUNCHER_LIVENESS_TIMEOUT")
    """Seconds one liveness probe may take (SGLang's own health check takes up to 20 s)."""

    liveness_failures: Int = Field(3, ge=1, le=1000, validation_alias="LAUNCHER_LIVENESS_FAILURES")
    """Consecutive failed liveness probes that make the launcher restart the server."""

    backoff_initial: Seconds = Field(2.0, validation_alias="LAUNCHER_BACKOFF_INITIAL")
    """Seconds before the first restart; doubles on each restart up to `LAUNCHER_BACKOFF_MAX`."""

    backoff_max: Seconds = Field(120.0, validation_alias="LAUNCHER_BACKOFF_MAX")
    """Longest wait between restarts, in seconds."""

    backoff_reset: Seconds = Field(600.0, validation_alias="LAUNCHER_BACKOFF_RESET")
    """Seconds of healthy serving after which the restart delay starts again from the initial."""

    start_retries: Int = Field(3, ge=0, le=1000, validation_alias="LAUNCHER_START_RETRIES")
    """Restarts tried when the server fails before it was ever ready; then the launcher gives
    up (exit 78)."""

    stop_timeout: Seconds = Field(6.0, validation_alias="LAUNCHER_STOP_TIMEOUT")
    """Seconds one stop may take before the server's whole tree is killed: SGLang's main
    process alone gets SIGTERM and drains the requests in flight (it looks every 5 s; in
    worker mode the gateway's deregistration comes first, within a share of this). The
    default fits `docker stop`'s 10 s (supervisord and the edge take up to 4 s more); for a
    longer drain raise it and give the container 4 s more (`docker run --stop-timeout N`)."""

    flap_threshold: Int = Field(5, ge=1, le=100_000, validation_alias="LAUNCHER_FLAP_THRESHOLD")
    """Restarts within the last hour past which the launcher warns that the server is
    flapping (status.json and `status` always show the count)."""

    tail_lines: Int = Field(40, ge=1, le=10000, validation_alias="LAUNCHER_TAIL_LINES")
    """Server output lines kept to explain a failure."""
