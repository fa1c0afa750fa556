"""jupyter's settings part (`jupyter`).

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..knob_types import SafePath


class JupyterKnobs(BaseModel):
    """jupyter's knobs."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

    jupyter_type: Literal["lab", "notebook"] = Field("lab", validation_alias="JUPYTER_TYPE")
    """Jupyter's interface: `lab` (JupyterLab) or `notebook` (Notebook 7). It runs when a
    `PORTAL_CONFIG` entry named Jupyter publishes it (the default does)."""

    jupyter_bin: SafePath = Field(
        Path("/opt/jupyter/venv/bin/jupyter"), validation_alias="JUPYTER_BIN"
    )
    """The `jupyter` command of Jupyter's own virtual environment."""

    jupyter_dir: SafePath | None = Field(None, validation_alias="JUPYTER_DIR")
    """Directory Jupyter's file browser opens in (the whole file system stays reachable);
    default `WORKSPACE`."""
