"""What Jupyter adds to the image and to a boot.

Size: a fresh venv made like the image's (`python -m venv --without-pip`, then
`pip --python VENV install jupyterlab==X notebook==Y`) measured with `du`, and the same for
ipykernel over a venv that has what SGLang already requires of its dependencies (IPython,
pyzmq). Needs the package index (pip's own configuration).

Boot: `vast-sglang-launcher jupyter` started as supervisord starts it, timed to the first
200 of `GET /api/status` on its port (Jupyter starts beside the SGLang server, after
provisioning: it delays the API only by the CPU it takes, reported too), then one kernel
started, then SIGTERM timed until the command and every process it started are gone.

Run: python bench/bench_jupyter.py [--runs 5] [--no-size] [--jupyter VENV/bin/jupyter]
(default: the jupyter beside this Python, as the tests use it)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, launcher_argv, wait_for  # noqa: E402

PINS = ("jupyterlab==4.6.6", "notebook==7.6.5")
IPYKERNEL = "ipykernel==7.4.0"


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def venv_size(packages: tuple[str, ...], tmp: Path, base: tuple[str, ...] = ()) -> int:
    """Bytes that installing `packages` adds to a fresh venv that already has `base`."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    quiet = ["-q", "--no-cache-dir", "--disable-pip-version-check"]
    if base:
        subprocess.run([*pip, *quiet, *base], check=True)
    before = du(venv)
    subprocess.run([*pip, *quiet, *packages], check=True)
    return du(venv) - before


def wait_jupyter(
    client: httpx.Client, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120
) -> None:
    """Until Jupyter answers /api/status (`client`: straight to its loopback port)."""

    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"jupyter exited with {proc.returncode}")
        try:
            return client.get("/api/status").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, "Jupyter to answer", timeout)


def start_kernel(client: httpx.Client) -> None:
    """A kernel, started as JupyterLab starts one (its XSRF cookie from the page)."""
    client.get("/lab")
    r = client.post("/api/kernels", json={}, headers={"X-XSRFToken": client.cookies["_xsrf"]})
    assert r.status_code == 201, r.text


def one_boot(jupyter: Path, tmp: Path) -> tuple[float, float, float]:
    """(seconds to the first 200, CPU seconds until then, seconds from SIGTERM to exit)."""
    port = free_port()
    (tmp / "ws").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp),
        "PYTHONPATH": str(ROOT),
        "LAUNCHER_RUN_DIR": str(tmp / "run"),
        "LAUNCHER_LOG_DIR": str(tmp / "log"),
        "LAUNCHER_MARKER_DIR": str(tmp),
        "WORKSPACE": str(tmp / "ws"),
        "JUPYTER_BIN": str(jupyter),
        "LAUNCHER_PIP_PYTHON": sys.executable,
        "PORTAL_CONFIG": f"localhost:{free_port()}:{port}:/:Jupyter",
    }
    start = time.perf_counter()
    proc = subprocess.Popen(
        launcher_argv("jupyter"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_jupyter(client, proc)
            ready = time.perf_counter() - start
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            cpu = sum(sum(p.cpu_times()[:2]) for p in tree)
            start_kernel(client)
        everything = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        stop = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        psutil.wait_procs(everything, timeout=60)
        stopped = time.perf_counter() - stop
        return ready, cpu, stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-size", action="store_true")
    parser.add_argument("--jupyter", type=Path, default=Path(sys.executable).parent / "jupyter")
    args = parser.parse_args()
    result: dict[str, object] = {}
    if not args.no_size:
        with tempfile.TemporaryDirectory() as tmp:
            result["jupyter_venv_bytes"] = venv_size(PINS, Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            # SGLang already requires IPython and pyzmq (Requires-Dist of sglang 0.5.6.post2
            # and 0.5.23), so those are there before ipykernel
            result["ipykernel_in_sglang_python_bytes"] = venv_size(
                (IPYKERNEL,), Path(tmp), base=("ipython", "pyzmq>=25.1.2")
            )
    readies, cpus, stops = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            ready, cpu, stop = one_boot(args.jupyter, Path(tmp))
        readies.append(ready)
        cpus.append(cpu)
        stops.append(stop)
    result.update(
        runs=args.runs,
        ready_s_median=round(statistics.median(readies), 2),
        ready_s_min=round(min(readies), 2),
        cpu_s_to_ready_median=round(statistics.median(cpus), 2),
        stop_s_median=round(statistics.median(stops), 2),
        stop_s_max=round(max(stops), 2),
        load_1min=round(os.getloadavg()[0], 1),
        cpus=os.cpu_count(),
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
