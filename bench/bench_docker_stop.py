"""Benchmark `docker stop` without Docker: TERM to PID 1 -> every process exited.

`entrypoint` runs as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`, as
root), execs supervisord with the project's supervisor/ files, which start the launcher
(serving tests/sglang_standin.py with 2 child processes) and the real Caddy. Once the server
is ready, PID 1 gets SIGTERM, as from `docker stop`; measured, per run:

- TERM -> all exited: until PID 1 has exited (supervisord exits after every program did, and
  the launcher after the server's whole tree did; PID 1 exiting would kill the rest);
- TERM -> "stopped: sglang" and "stopped: caddy" as supervisord logs them (ms resolution);
- requests in flight completed: streamed chat completions (5 chunks 0.5 s apart, about 2 s,
  through the edge with the token) started before the TERM that got every chunk and [DONE].

Scenarios: 0, 1 and 8 streams in flight; and a server with work of its own that would
drain for an hour (the launcher kills it when LAUNCHER_STOP_TIMEOUT is spent). The stand-in
drains as SGLang does (SIGTERM flag, a watchdog looking every 5 s). Default settings.

--jupyter also runs the `jupyter` program (JupyterLab beside this Python, a Jupyter entry in
PORTAL_CONFIG) with one kernel started, and reports TERM -> "stopped: jupyter".

Run (as root, with caddy and supervisord on PATH):
    python bench/bench_docker_stop.py [--runs 5] [--jupyter]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "sglang_standin.py"
sys.path.insert(0, str(ROOT / "tests"))

from bench_jupyter import start_kernel, wait_jupyter  # noqa: E402
from conftest import free_port, launcher_argv  # noqa: E402

ENTRYPOINT = launcher_argv("entrypoint")


def supervisord_time(line: str) -> float:
    stamp = " ".join(line.split()[:2])
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def stream(port: int, done: list[bool]) -> None:
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    got: list[str] = []
    try:
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=payload,
            headers={"Authorization": "Bearer bench"},
            timeout=30,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(line)
    except httpx.HTTPError:
        pass
    done.append(len(got) == 6 and got[-1] == "data: [DONE]")


def answered(log: Path) -> int:
    """Chat completions the stand-in has begun to answer (STANDIN_REQUEST_LOG)."""
    try:
        text = log.read_text()
    except OSError:
        return 0
    return text.count('"path": "/v1/chat/completions"')


def one_run(tmp: Path, drain: float, streams: int, jupyter: bool = False) -> dict[str, float]:
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"num_attention_heads": 8, "num_key_value_heads": 8})
    )
    (tmp / "markers").mkdir()
    api, sglang = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        "LAUNCHER_RUN_DIR": str(tmp / "run"),
        "LAUNCHER_LOG_DIR": str(tmp / "logs"),
        "LAUNCHER_MARKER_DIR": str(tmp / "markers"),
        "LAUNCHER_SUPERVISORD_CONFIG": str(ROOT / "supervisor" / "supervisord.conf"),
        "LAUNCHER_PORTAL_YAML": str(tmp / "portal.yaml"),
        "SGLANG_ARGS_FILE": str(tmp / "none.conf"),
        "WORKSPACE": str(tmp / "workspace"),
        "PORTAL_DIR": str(tmp / "no-portal"),
        "SGLANG_MODEL": str(model),
        "SGLANG_COMMAND": shlex.join([sys.executable, str(STANDIN)]),
        "LAUNCHER_SERVER_PORT": str(sglang),
        "PORTAL_CONFIG": f"localhost:{api}:{sglang}:/:SGLang API",
        "OPEN_BUTTON_TOKEN": "bench",
        "GPU_COUNT": "1",
        "HF_HUB_OFFLINE": "1",
        "STANDIN_CHILDREN": "2",
        "STANDIN_DRAIN": str(drain),
        "STANDIN_STREAM_INTERVAL": "0.5",
        "STANDIN_REQUEST_LOG": str(tmp / "requests.jsonl"),
    }
    names = ["sglang", "caddy"]
    if jupyter:
        jupyter_port = free_port()
        env["PORTAL_CONFIG"] += f"|localhost:{free_port()}:{jupyter_port}:/:Jupyter"
        env["JUPYTER_BIN"] = str(Path(sys.executable).parent / "jupyter")
        env["HOME"] = str(tmp)
        names.append("jupyter")
    out_path = tmp / "container.log"
    unshare = shutil.which("unshare") or "unshare"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [unshare, "--pid", "--fork", "--mount-proc", *ENTRYPOINT],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                state = json.loads((tmp / "run" / "status.json").read_text()).get("state")
            except (OSError, ValueError):
                state = None
            if state == "ready":
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"not ready:\n{out_path.read_text()}")
            time.sleep(0.05)
        if jupyter:
            with httpx.Client(base_url=f"http://127.0.0.1:{jupyter_port}", timeout=30) as client:
                wait_jupyter(client)
                start_kernel(client)
        time.sleep(0.5)
        done: list[bool] = []
        readers = [
            threading.Thread(target=stream, args=(api, done), daemon=True) for _ in range(streams)
        ]
        for reader in readers:
            reader.start()
        requests = tmp / "requests.jsonl"
        while answered(requests) < streams:
            time.sleep(0.02)  # every stream has its answer's headers (the stand-in logs 200)
        pid1 = psutil.Process(proc.pid).children()[0]
        t0_wall = time.time()
        t0 = time.monotonic()
        pid1.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        total = time.monotonic() - t0
        for reader in readers:
            reader.join(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out_path.read_text(errors="replace")
    if rc != 0 or "with SIGKILL" in text:
        raise SystemExit(f"unclean stop (rc {rc}):\n{text}")
    found = {}
    for line in text.splitlines():
        for name in names:
            if f"stopped: {name} " in line:
                found[name] = supervisord_time(line) - t0_wall
    return {"total": total, **{name: found[name] for name in names}, "completed": float(sum(done))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--jupyter", action="store_true", help="run Jupyter too, with a kernel")
    args = p.parse_args()
    scenarios = (
        ("0 streams in flight", 0.0, 0),
        ("1 stream in flight", 0.0, 1),
        ("8 streams in flight", 0.0, 8),
        ("work of its own for an hour", 3600.0, 0),
    )
    for label, drain, streams in scenarios:
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(one_run(Path(tmp), drain, streams, args.jupyter))
        completed = sum(r["completed"] for r in results)
        print(f"{label} ({args.runs} runs): {completed:g} of {streams * args.runs} completed")
        for key, what in (
            ("sglang", 'TERM to PID 1 -> "stopped: sglang"'),
            *((("jupyter", 'TERM to PID 1 -> "stopped: jupyter"'),) if args.jupyter else ()),
            ("caddy", 'TERM to PID 1 -> "stopped: caddy"'),
            ("total", "TERM to PID 1 -> every process exited"),
        ):
            values = [r[key] for r in results]
            print(
                f"  {what:<45} median {statistics.median(values):6.2f} s  "
                f"min {min(values):6.2f}  max {max(values):6.2f}"
            )


if __name__ == "__main__":
    main()
