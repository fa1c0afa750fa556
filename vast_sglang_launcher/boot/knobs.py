"""boot's settings part (`entrypoint`, `provision`): scripts, first-boot installs and the
supervisord configuration.

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..knob_types import Int, SafePath, Seconds, Source


class BootKnobs(BaseModel):
    """boot's knobs."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

    hotfix_script: Source | None = Field(None, validation_alias="HOTFIX_SCRIPT")
    """URL or path of a script run early on every boot."""

    provisioning_script: Source | None = Field(None, validation_alias="PROVISIONING_SCRIPT")
    """URL or path of a script run once, before the server starts."""

    apt_packages: str = Field("", validation_alias="APT_PACKAGES")
    """Debian packages installed on first boot (space-separated)."""

    pip_packages: str = Field("", validation_alias="PIP_PACKAGES")
    """Python packages installed on first boot into SGLang's Python (space-separated)."""

    pip_python: SafePath | None = Field(None, validation_alias="LAUNCHER_PIP_PYTHON")
    """Python that `PIP_PACKAGES` go into; default the interpreter of `SGLANG_COMMAND`."""

    download_timeout: Seconds = Field(30.0, validation_alias="LAUNCHER_DOWNLOAD_TIMEOUT")
    """Seconds allowed to connect to, and between reads from, a script URL."""

    download_retries: Int = Field(3, ge=0, le=100, validation_alias="LAUNCHER_DOWNLOAD_RETRIES")
    """Retries of a script download after a network error or a 5xx answer."""

    download_max_bytes: Int = Field(
        10 * 1024 * 1024, ge=1, le=1 << 30, validation_alias="LAUNCHER_DOWNLOAD_MAX_BYTES"
    )
    """Largest script accepted, in bytes."""

    supervisord_config: SafePath = Field(
        Path("/etc/supervisor/supervisord.conf"), validation_alias="LAUNCHER_SUPERVISORD_CONFIG"
    )
    """supervisord configuration that `entrypoint` starts."""
