"""Jupyter's place, command line, environment and kernelspec (pure), and the `jupyter`
command's one-line refusals (real CLI in a subprocess)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import CHECKOUT, free_port, launcher_argv, launcher_env, run_launcher, wait_for_port

from vast_sglang_launcher import markers
from vast_sglang_launcher.edge.portal import DEFAULT_PORTAL_CONFIG, parse_portal_config
from vast_sglang_launcher.jupyter.server_args import (
    JupyterPlace,
    jupyter_argv,
    jupyter_environment,
    jupyter_place,
    kernel_spec,
    kernelspec_path,
)
from vast_sglang_launcher.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
VAST_TEMPLATE = (
    "localhost:1111:11111:/:Instance Portal|localhost:7860:17860:/:Model UI"
    "|localhost:8000:18000:/docs:SGLang API|localhost:8080:18080:/:Jupyter"
    "|localhost:8080:8080:/terminals/1:Jupyter Terminal"
)


def place(config: str) -> JupyterPlace | None:
    return jupyter_place([(e.name, e.external, e.internal) for e in parse_portal_config(config)])


def test_the_default_and_vasts_template_publish_jupyter_8080_to_18080() -> None:
    assert place(DEFAULT_PORTAL_CONFIG) == JupyterPlace(external=8080, internal=18080)
    # the "Jupyter Terminal" entry is a link (equal ports): the first published entry counts
    assert place(VAST_TEMPLATE) == JupyterPlace(external=8080, internal=18080)
    assert place("localhost:9999:19999:/lab:my JUPYTERLAB") == JupyterPlace(9999, 19999)


@pytest.mark.parametrize(
    "config",
    [
        "localhost:8000:18000:/:SGLang API",
        "localhost:8080:8080:/:Jupyter",  # a port published as it is: never Jupyter's own
    ],
)
def test_no_published_jupyter_entry_means_no_jupyter(config: str) -> None:
    assert place(config) is None


def test_jupyter_listens_on_loopback_without_a_token_of_its_own(tmp_path: Path) -> None:
    settings = load_settings({"WORKSPACE": str(tmp_path), "JUPYTER_BIN": "/j/bin/jupyter"})
    argv = jupyter_argv(settings, JupyterPlace(8080, 18080))
    assert argv[:2] == ["/j/bin/jupyter", "lab"]
    assert "--ServerApp.ip=127.0.0.1" in argv
    assert "--ServerApp.port=18080" in argv
    assert "--ServerApp.port_retries=0" in argv
    assert "--IdentityProvider.token=" in argv
    assert "--ServerApp.root_dir=/" in argv
    assert f"--ContentsManager.preferred_dir={str(tmp_path).lstrip('/')}" in argv
    # Jupyter's own origin check stays on (no allow_origin='*')
    assert not [a for a in argv if "allow_origin" in a or "disable_check_xsrf" in a]
    notebook = load_settings({"JUPYTER_TYPE": "notebook", "JUPYTER_DIR": "/data"})
    argv = jupyter_argv(notebook, JupyterPlace(8080, 18080))
    assert argv[1] == "notebook"
    assert "--ContentsManager.preferred_dir=data" in argv


def test_the_kernelspec_runs_sglangs_python_and_comes_first(tmp_path: Path) -> None:
    settings = load_settings({"LAUNCHER_RUN_DIR": str(tmp_path / "run")})
    spec = kernel_spec(Path("/usr/bin/python3"))
    assert spec["argv"] == [
        "/usr/bin/python3",
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    env = jupyter_environment(settings, {"PATH": "/bin", "JUPYTER_PATH": "/mine"})
    first = env["JUPYTER_PATH"].split(":")[0]
    assert kernelspec_path(settings) == Path(first) / "kernels" / "python3" / "kernel.json"
    assert env["JUPYTER_PATH"].split(":")[1] == "/mine"
    assert env["JUPYTER_RUNTIME_DIR"].startswith(str(tmp_path / "run"))
    # notebooks use the server's Hugging Face cache (the server's HOME is WORKSPACE)
    assert env["HF_HOME"] == "/workspace/.cache/huggingface"
    assert jupyter_environment(settings, {"HF_HOME": "/hf"})["HF_HOME"] == "/hf"


def cli(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": CHECKOUT,
        "LAUNCHER_RUN_DIR": str(tmp_path / "run"),
        "LAUNCHER_LOG_DIR": str(tmp_path / "log"),
        "LAUNCHER_MARKER_DIR": str(tmp_path),
        "WORKSPACE": str(tmp_path),
        "JUPYTER_BIN": str(Path(sys.executable).parent / "jupyter"),
    }
    return run_launcher("jupyter", env={**base, **env}, timeout=60)


def test_without_a_jupyter_entry_nothing_starts(tmp_path: Path) -> None:
    done = cli(tmp_path, PORTAL_CONFIG="localhost:8000:18000:/:SGLang API")
    assert done.returncode == 0, done.stderr
    assert "not starting Jupyter: PORTAL_CONFIG has no Jupyter entry" in done.stderr
    assert not (tmp_path / "log" / "jupyter.log").exists()
    done = cli(tmp_path, PORTAL_CONFIG="localhost:8080:8080:/:Jupyter")
    assert done.returncode == 0, done.stderr
    assert "localhost:8080:18080:/:Jupyter" in done.stderr


def test_serverless_mode_starts_no_jupyter(tmp_path: Path) -> None:
    """Vast's image skips Jupyter on a serverless worker (jupyter.sh, exit_serverless.sh)."""
    done = cli(tmp_path, SERVERLESS="true")  # the default PORTAL_CONFIG names Jupyter
    assert done.returncode == 0, done.stderr
    assert "not starting Jupyter: serverless mode (SERVERLESS)" in done.stderr
    assert not (tmp_path / "log" / "jupyter.log").exists()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"JUPYTER_TYPE": "classic"}, "JUPYTER_TYPE"),
        ({"JUPYTER_BIN": "/nonexistent/jupyter"}, "JUPYTER_BIN=/nonexistent/jupyter is not an"),
        ({"JUPYTER_DIR": "/nonexistent/dir"}, "JUPYTER_DIR=/nonexistent/dir is not a directory"),
        ({"PORTAL_CONFIG": "localhost:8080"}, "PORTAL_CONFIG"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_78(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    done = cli(tmp_path, **{"PORTAL_CONFIG": "localhost:8080:18080:/:Jupyter", **env})
    assert done.returncode == 78, done.stderr
    assert line in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_the_supervisord_program_runs_the_command_between_the_server_and_the_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.datatypes import RestartWhenExitUnexpected
    from test_image import parse_supervisor

    settings = load_settings(
        {"LAUNCHER_RUN_DIR": str(tmp_path / "run"), "LAUNCHER_LOG_DIR": str(tmp_path / "logs")}
    )
    _, programs = parse_supervisor(tmp_path, monkeypatch, settings)
    p = programs["jupyter"]
    assert p.command == "/venv/bin/python -m vast_sglang_launcher jupyter"
    assert p.exitcodes == [0, 78]
    assert p.autorestart is RestartWhenExitUnexpected
    assert p.startsecs == 0  # "no Jupyter entry" ends EXITED, not BACKOFF
    assert p.stopsignal == signal.SIGTERM
    # stopped after the server, before the edge (supervisord stops the highest first)
    assert programs["caddy"].priority < p.priority < programs["sglang"].priority
    assert p.redirect_stderr is True
    assert p.stdout_logfile == "/dev/stdout"


def test_the_image_pins_the_jupyter_the_tests_run() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    pins = dict(re.findall(r'^    "(jupyterlab|notebook)==([^"]+)",$', pyproject, re.M))
    assert pins.keys() == {"jupyterlab", "notebook"}
    for name, version in pins.items():
        assert f"ARG {name.upper()}_VERSION={version}\n" in dockerfile, name
    assert '"jupyterlab==${JUPYTERLAB_VERSION}" "notebook==${NOTEBOOK_VERSION}"' in dockerfile
    assert '"ipykernel==${IPYKERNEL_VERSION}"' in dockerfile


def test_jupyter_waits_for_provisioning_and_stops_cleanly(tmp_path: Path) -> None:
    """While `.provisioning` names a live owner nothing listens; once it is gone Jupyter
    starts; SIGTERM stops it with exit 0 and nothing of it left."""

    owner = subprocess.Popen(["sleep", "600"])
    try:
        marker = tmp_path / markers.PROVISIONING
        markers.claim(marker, owner.pid)
        port = free_port()
        base = {
            "PATH": os.environ.get("PATH", os.defpath),
            "PYTHONPATH": CHECKOUT,
            "HOME": str(tmp_path),
            "LAUNCHER_RUN_DIR": str(tmp_path / "run"),
            "LAUNCHER_LOG_DIR": str(tmp_path / "log"),
            "LAUNCHER_MARKER_DIR": str(tmp_path),
            "WORKSPACE": str(tmp_path),
            "JUPYTER_BIN": str(Path(sys.executable).parent / "jupyter"),
            "LAUNCHER_PIP_PYTHON": sys.executable,
            "PORTAL_CONFIG": f"localhost:{free_port()}:{port}:/:Jupyter",
        }
        err = tmp_path / "stderr"
        with open(err, "wb") as out:
            proc = subprocess.Popen(
                launcher_argv("jupyter"),
                env=launcher_env(base),
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        try:
            deadline = time.monotonic() + 60
            while "waiting for provisioning" not in err.read_text():
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
            assert psutil.Process(proc.pid).children() == []
            assert not (tmp_path / "log" / "jupyter.log").exists()
            markers.remove(marker)
            wait_for_port(port, proc, timeout=120)
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, err.read_text()
            _gone, alive = psutil.wait_procs(tree, timeout=10)
            assert not alive, alive
            assert "Jupyter stopped" in err.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        owner.kill()
        owner.wait()


def test_a_hung_jupyter_is_killed_and_its_kernel_swept(tmp_path: Path) -> None:
    """A Jupyter that cannot stop (SIGSTOPped) is killed after its grace; its kernel, which
    still holds Jupyter's output pipe, is swept, and the command exits 0."""
    import httpx

    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": CHECKOUT,
        "HOME": str(tmp_path),
        "LAUNCHER_RUN_DIR": str(tmp_path / "run"),
        "LAUNCHER_LOG_DIR": str(tmp_path / "log"),
        "LAUNCHER_MARKER_DIR": str(tmp_path),
        "WORKSPACE": str(tmp_path),
        "JUPYTER_BIN": str(Path(sys.executable).parent / "jupyter"),
        "LAUNCHER_PIP_PYTHON": sys.executable,
        "PORTAL_CONFIG": f"localhost:{free_port()}:{port}:/:Jupyter",
    }
    err = tmp_path / "stderr"
    with open(err, "wb") as out:
        proc = subprocess.Popen(
            launcher_argv("jupyter"),
            env=launcher_env(env),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_for_port(port, proc, timeout=120)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            client.get("/lab")
            r = client.post(
                "/api/kernels", json={}, headers={"X-XSRFToken": client.cookies["_xsrf"]}
            )
            assert r.status_code == 201, r.text
        (jupyter,) = psutil.Process(proc.pid).children()
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 3, tree  # the command, Jupyter, the kernel
        jupyter.suspend()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, err.read_text()
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, alive
        text = err.read_text()
        assert "Jupyter did not stop within 1.5 s; killing it" in text
        assert "stopping a process that outlived Jupyter" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
