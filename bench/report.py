"""What the benchmarks that repeat a run print, for BENCHMARKS.md: a Markdown table of each
measure (median, min, max), then every number as JSON."""

from __future__ import annotations

import json
import os
import statistics


def require_root() -> None:
    """Stop unless root: the run makes a private network namespace (conftest.private_network)."""
    if os.geteuid() != 0:
        raise SystemExit("run as root (a private network namespace)")


def add(results: dict[str, list[float]], run: dict[str, float]) -> None:
    """Append one run's measures to `results`."""
    for key, value in run.items():
        results.setdefault(key, []).append(value)


def print_table(results: dict[str, list[float]]) -> None:
    print("| measure | median | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for key, values in results.items():
        print(
            f"| {key} | {statistics.median(values):.0f} | {min(values):.0f} | {max(values):.0f} |"
        )
    print(json.dumps(results))
