"""Cost of `status` (the image's HEALTHCHECK, every 30 s) against a bare `python -c pass`.

`python -m empty_module` is what `python -m` itself costs (runpy and the import system's
helpers), which the image's HEALTHCHECK (`python -m vast_sglang_launcher status`) pays too.

Runs the commands interleaved (one of each per round, so load on the machine hits all alike)
against a status.json that says `ready`, written for this live process, and reports the
median and minimum wall time and the mean CPU time (user + system) of each.

Run: python bench/bench_status.py [--runs 40] [--baseline-src DIR]

--baseline-src DIR adds the same `status` from another source tree (e.g. an older commit:
`git archive 28e41c2 | tar -x -C /tmp/base`), run with PYTHONPATH=DIR.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, exit status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--baseline-src", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from vast_sglang_launcher.pids import started_at
    from vast_sglang_launcher.supervise.status_writer import StatusFile

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        StatusFile(
            run_dir / "status.json",
            launcher_pid=os.getpid(),
            launcher_started=started_at(os.getpid()),
        ).update(state="ready", argv=["sglang", "serve"])
        # PYTHONPATH picks the source tree; the commands run in run_dir, since `-m` would put
        # the current directory first on sys.path.
        env = {**os.environ, "LAUNCHER_RUN_DIR": str(run_dir), "PYTHONPATH": str(ROOT)}
        py = sys.executable
        (run_dir / "empty_module.py").write_text("")
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([py, "-c", "pass"], env),
            "python -m empty_module": ([py, "-m", "empty_module"], env),
            "python -m vast_sglang_launcher status": (
                [py, "-m", "vast_sglang_launcher", "status"],
                env,
            ),
        }
        script = shutil.which("vast-sglang-launcher", path=str(Path(py).parent))
        if script:
            cases["vast-sglang-launcher status (console script)"] = ([script, "status"], env)
        if args.baseline_src:
            base_env = {**env, "PYTHONPATH": str(args.baseline_src.resolve())}
            cases["baseline: python -m vast_sglang_launcher status"] = (
                [py, "-m", "vast_sglang_launcher", "status"],
                base_env,
            )
        # Compiled once, as `pip install` does in the image (PYTHONDONTWRITEBYTECODE=1 in the
        # environment would otherwise make every run compile the modules from source).
        for src in {ROOT, args.baseline_src or ROOT}:
            subprocess.run([py, "-m", "compileall", "-q", str(src / "vast_sglang_launcher")])
        for argv, case_env in cases.values():  # warm the page cache; check it answers ready
            _, _, code = _run(argv, case_env, run_dir)
            assert code == 0, argv
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (argv, case_env) in cases.items():
                wall, cpu, _ = _run(argv, case_env, run_dir)
                walls[name].append(wall)
                cpus[name].append(cpu)

    bare = statistics.median(walls["python -c pass"])
    print(f"{args.runs} interleaved runs each, {sys.executable} ({sys.version.split()[0]})")
    print("| command | wall median (ms) | wall min (ms) | CPU mean (ms) | median / bare |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in cases:
        median = statistics.median(walls[name])
        print(
            f"| `{name}` | {median * 1000:.1f} | {min(walls[name]) * 1000:.1f} | "
            f"{statistics.mean(cpus[name]) * 1000:.1f} | {median / bare:.2f} |"
        )


if __name__ == "__main__":
    main()
