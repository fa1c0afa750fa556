"""The cost of the issue 17 additions: reading a release's option table from its source (a
dev tool, per release) and the PEP 668 probe of SGLang's Python at first boot.

Run: python bench/bench_release_tables.py SGLANG_SRC [runs]
SGLANG_SRC holds one unzipped wheel per release: SGLANG_SRC/<version>/sglang/...
"""

from __future__ import annotations

import functools
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from vast_sglang_launcher.boot.packages import externally_managed
from vast_sglang_launcher.plan.versions import version_key

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "option_table_from_source.py"


def _reader() -> ModuleType:
    spec = importlib.util.spec_from_file_location("option_table_from_source", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    src = Path(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    reader = _reader()
    print("| release | options | median ms (reading from source) |")
    print("| --- | --- | --- |")
    found = [p.name for p in src.iterdir() if (p / "sglang").is_dir()]
    for release in sorted(found, key=lambda v: version_key(v) or ()):
        pkg = src / release / "sglang"
        count = len(reader.table_from_source(pkg, release)["options"])
        ms = _median_ms(functools.partial(reader.table_from_source, pkg, release), runs)
        print(f"| {release} | {count} | {ms:.0f} |")
    env = {"PATH": "/usr/bin:/bin"}
    probe = _median_ms(lambda: externally_managed(Path(sys.executable), env), runs * 4)
    print(f"\nPEP 668 probe of {sys.executable}: median {probe:.0f} ms over {runs * 4} runs")


if __name__ == "__main__":
    main()
