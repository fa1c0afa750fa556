"""coldstart's settings part: the weight prefetch and the stall watchdog.

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..knob_types import Bool, Int, Seconds


class ColdstartKnobs(BaseModel):
    """coldstart's knobs."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

    prefetch: Bool = Field(True, validation_alias="LAUNCHER_PREFETCH")
    """Download the model's weights from the hub at boot, beside the first-boot installs and
    the provisioning script, so that the server starts on a complete download. Off: SGLang
    downloads them itself when it starts."""

    prefetch_connections: Int = Field(
        8, ge=1, le=64, validation_alias="LAUNCHER_PREFETCH_CONNECTIONS"
    )
    """Files the prefetch downloads at the same time."""

    stall_timeout: Seconds = Field(600.0, validation_alias="LAUNCHER_STALL_TIMEOUT")
    """Seconds without server output and without download progress, while the server
    starts, after which the launcher warns that the start looks stalled (naming the phase)."""

    stall_action: Literal["warn", "restart"] = Field(
        "warn", validation_alias="LAUNCHER_STALL_ACTION"
    )
    """What a stalled start leads to: `warn` (a log line and status.json only) or `restart`
    (the server is stopped and started again, as after a failed start)."""
