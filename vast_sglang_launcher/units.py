"""How the launcher writes a number of bytes for a person (logs, status, the loading page)."""

from __future__ import annotations


def fmt_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB`` ... ``12.3 GiB`` (GiB is the largest unit)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop returns at GiB
