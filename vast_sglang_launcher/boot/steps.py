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

    @classmethod
    def of(cls, step: str, outcome: str, detail: str = "") -> StepResult:
        """A result from a plain outcome word (`failed` for a word it does not know)."""
        known: dict[str, Outcome] = {
            "ok": "ok",
            "skipped": "skipped",
            "failed": "failed",
            "running": "running",
        }
        return cls(step, known.get(outcome, "failed"), detail)

    def line(self) -> str:
        """The one-line summary `provision` prints."""
        return f"{self.step}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")
