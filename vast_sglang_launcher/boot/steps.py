"""The outcome of one boot step (hotfix, first boot, provisioning), for logs and summaries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["ok", "skipped", "failed", "running", "interrupted"]


@dataclass(frozen=True)
class StepResult:
    """What a boot step did. `running`: provisioning continues in the background."""

    step: str
    outcome: Outcome
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "interrupted")

    def line(self) -> str:
        """The one-line summary `provision` prints."""
        return f"{self.step}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")
