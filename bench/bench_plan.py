"""Wall time of `python -m vast_sglang_launcher plan` (the whole process) and of build_plan.

Run: python bench/bench_plan.py [runs]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import launcher_argv, launcher_env


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        model.mkdir()
        (model / "config.json").write_text(
            json.dumps({"num_attention_heads": 28, "num_key_value_heads": 4})
        )
        env = launcher_env(
            dict(
                os.environ,
                SGLANG_MODEL=str(model),
                GPU_COUNT="8",
                SGLANG_ARGS="--context-length 8192 --mem-fraction-static 0.85",
                SGLANG_ARGS_FILE=str(Path(tmp) / "args.conf"),
            )
        )
        cmd = launcher_argv("plan")
        subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm the page cache
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        python_only = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
            python_only.append(time.perf_counter() - start)

        from vast_sglang_launcher.plan.prepare import prepare_plan
        from vast_sglang_launcher.settings import load_settings

        settings = load_settings(env)
        start = time.perf_counter()
        for _ in range(200):
            prepare_plan(settings, env)
        in_process = (time.perf_counter() - start) / 200

    times.sort()
    print(
        f"plan, whole process ({runs} runs): median {statistics.median(times) * 1000:.0f} ms, "
        f"p90 {times[int(len(times) * 0.9) - 1] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
    )
    print(f"bare python startup: median {statistics.median(python_only) * 1000:.0f} ms")
    print(f"prepare_plan in process (args, GPUs, config.json, plan): {in_process * 1e6:.0f} us")


if __name__ == "__main__":
    main()
