"""The shared floor's settings part: log files and format, the run and marker directories.

Composed into the one `settings.Settings`; imports only pydantic and `knob_types`. What is
derived from these values (status.json's path, a marker's path) is path arithmetic, no I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .knob_types import Int, SafePath


class CommonKnobs(BaseModel):
    """The knobs every capability reads."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

    log_dir: SafePath = Field(Path("/var/log/portal"), validation_alias="LAUNCHER_LOG_DIR")
    """Directory of the log files (sglang.log, provisioning and hotfix logs)."""

    log_max_bytes: Int = Field(
        100 * 1024 * 1024, ge=4096, le=1 << 40, validation_alias="LAUNCHER_LOG_MAX_BYTES"
    )
    """Size in bytes at which a log file the launcher writes (sglang.log, first_boot.log,
    provisioning.log, hotfix.log) is rotated to `.1`."""

    log_backups: Int = Field(3, ge=0, le=100, validation_alias="LAUNCHER_LOG_BACKUPS")
    """Rotated copies kept of each log file (`.1` is the newest); 0 keeps none."""

    log_format: Literal["console", "json"] = Field(
        "console", validation_alias="LAUNCHER_LOG_FORMAT"
    )
    """Format of the launcher's own log lines: `console` or `json`."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LAUNCHER_LOG_LEVEL"
    )
    """Least severe launcher log level printed."""

    run_dir: SafePath = Field(
        Path("/run/vast-sglang-launcher"), validation_alias="LAUNCHER_RUN_DIR"
    )
    """Directory of status.json and the launcher's pid files."""

    marker_dir: SafePath = Field(Path("/"), validation_alias="LAUNCHER_MARKER_DIR")
    """Directory of the boot markers (`.first_boot_complete`, `.provisioning`, ...)."""

    @property
    def status_file(self) -> Path:
        return self.run_dir / "status.json"

    def marker(self, name: str) -> Path:
        """Path of a boot marker such as `.provisioning`."""
        return self.marker_dir / name
