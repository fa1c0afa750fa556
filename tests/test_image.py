"""The image's files: supervisor/ (parsed by supervisord's own parser), docker/Dockerfile
(hadolint and what it must contain), every shell script (shellcheck), the portal wrapper."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from vast_sglang_launcher.boot.supervisord_env import supervisor_environment
from vast_sglang_launcher.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SUPERVISOR = ROOT / "supervisor"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PORTAL_WRAPPER = SUPERVISOR / "scripts" / "instance-portal.sh"
IN_CI = bool(os.environ.get("CI"))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; CI must install it (.ci/run)")
        pytest.skip(f"{name} is not installed here (CI installs it)")
    return path


def supervisor_files() -> list[Path]:
    return [SUPERVISOR / "supervisord.conf", *sorted((SUPERVISOR / "conf.d").glob("*.conf"))]


def env_references() -> set[str]:
    """Every `%(ENV_X)s` the supervisor files expand."""
    names: set[str] = set()
    for path in supervisor_files():
        names.update(re.findall(r"%\(ENV_([A-Za-z0-9_]+)\)s", path.read_text()))
    return names


def parse_supervisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> tuple[Any, dict[str, Any]]:
    """supervisord's own parse of supervisor/ with the environment entrypoint exports."""
    from supervisor.options import ServerOptions

    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    for key, value in supervisor_environment(settings, "/venv/bin/python").items():
        monkeypatch.setenv(key, value)
    options = ServerOptions()
    options.configfile = str(SUPERVISOR / "supervisord.conf")
    options.process_config(do_usage=False)
    programs = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    return options, programs


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            "LAUNCHER_RUN_DIR": str(tmp_path / "run"),
            "LAUNCHER_LOG_DIR": str(tmp_path / "logs"),
            "LAUNCHER_STOP_TIMEOUT": "42",
        }
    )


# --- supervisor/ ---------------------------------------------------------------------------


def test_supervisor_files_expand_exactly_the_exported_variables(settings: Settings) -> None:
    assert env_references() == set(supervisor_environment(settings))


def test_supervisord_paths_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    options, _ = parse_supervisor(tmp_path, monkeypatch, settings)
    assert options.nodaemon is True
    assert options.pidfile == str(settings.run_dir / "supervisord.pid")
    assert options.logfile == str(settings.log_dir / "supervisord.log")
    text = (SUPERVISOR / "supervisord.conf").read_text()
    assert "file=%(ENV_LAUNCHER_RUN_DIR)s/supervisor.sock" in text
    assert "serverurl=unix://%(ENV_LAUNCHER_RUN_DIR)s/supervisor.sock" in text
    assert not options.parse_warnings


def test_sglang_program_runs_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    from supervisor.datatypes import RestartWhenExitUnexpected

    _, programs = parse_supervisor(tmp_path, monkeypatch, settings)
    p = programs["sglang"]
    assert p.command == "/venv/bin/python -m vast_sglang_launcher run"
    assert p.exitcodes == [0, 78]
    assert p.autorestart is RestartWhenExitUnexpected
    assert p.stopsignal == signal.SIGTERM
    # longer than the launcher's own drain deadline: never SIGKILL a draining launcher
    assert p.stopwaitsecs > settings.stop_timeout
    assert p.redirect_stderr is True
    assert p.stdout_logfile == "/dev/stdout"
    assert p.stdout_logfile_maxbytes == 0


def test_caddy_program_runs_the_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    _, programs = parse_supervisor(tmp_path, monkeypatch, settings)
    p = programs["caddy"]
    assert p.command == "/venv/bin/python -m vast_sglang_launcher edge"
    assert p.exitcodes == [0]
    # longer than Caddy's grace period (10 s)
    assert p.stopwaitsecs > 10
    assert p.redirect_stderr is True and p.stdout_logfile == "/dev/stdout"


def test_serverless_program_runs_the_worker_before_and_stops_after_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    from supervisor.datatypes import RestartWhenExitUnexpected

    _, programs = parse_supervisor(tmp_path, monkeypatch, settings)
    p = programs["serverless"]
    assert p.command == "/venv/bin/python -m vast_sglang_launcher serverless"
    assert p.exitcodes == [0, 78]
    assert p.autorestart is RestartWhenExitUnexpected
    assert p.startsecs == 0  # its "off" exit is immediate
    # supervisord starts lowest priority first and stops highest first
    assert p.priority < programs["sglang"].priority
    assert p.redirect_stderr is True and p.stdout_logfile == "/dev/stdout"
    text = dockerfile()
    assert "ENV LAUNCHER_SERVERLESS_PYTHON=/opt/vastai/venv/bin/python" in text
    assert '"vastai==${VASTAI_VERSION}" setuptools' in text
    assert 'ENV LAUNCHER_GATEWAY_COMMAND="/opt/smg/venv/bin/smg launch"' in text


def test_portal_wrapper_skips_the_portal_in_serverless_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        ["/bin/bash", str(PORTAL_WRAPPER)],
        env={"PATH": os.defpath, "PORTAL_DIR": str(tmp_path), "SERVERLESS": "True"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0
    assert "serverless mode" in done.stdout


def test_loading_page_program_outlives_the_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    _, programs = parse_supervisor(tmp_path, monkeypatch, settings)
    p = programs["loading_page"]
    assert p.command == "/venv/bin/python -m vast_sglang_launcher loading-page"
    assert p.exitcodes == [0]
    # started before the edge and stopped after it: the edge never finds no socket
    assert p.priority < programs["caddy"].priority
    assert p.redirect_stderr is True and p.stdout_logfile == "/dev/stdout"


def test_portal_program_runs_the_wrapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    from supervisor.datatypes import RestartWhenExitUnexpected

    _, programs = parse_supervisor(tmp_path, monkeypatch, settings)
    p = programs["instance_portal"]
    command = p.command.split()
    assert command[0] == "/bin/bash"
    assert Path(command[1]).resolve() == PORTAL_WRAPPER
    assert p.autorestart is RestartWhenExitUnexpected
    assert p.exitcodes == [0]
    # its "not installed" exit is immediate and must end EXITED, not BACKOFF
    assert p.startsecs == 0


# --- the portal wrapper --------------------------------------------------------------------


def test_portal_wrapper_exits_0_when_the_portal_is_absent(tmp_path: Path) -> None:
    done = subprocess.run(
        ["/bin/bash", str(PORTAL_WRAPPER)],
        env={"PATH": os.defpath, "PORTAL_DIR": str(tmp_path / "none")},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0
    assert "not installed" in done.stdout


def fake_portal(tmp_path: Path, body: str) -> Path:
    portal = tmp_path / "portal-aio"
    (portal / "portal").mkdir(parents=True)
    (portal / "portal" / "portal.py").write_text("")
    (portal / "venv" / "bin").mkdir(parents=True)
    fastapi = portal / "venv" / "bin" / "fastapi"
    fastapi.write_text("#!/bin/bash\n" + body)
    fastapi.chmod(0o755)
    return portal


def test_portal_wrapper_runs_the_portal_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "args"
    portal = fake_portal(
        tmp_path,
        f'echo "$PWD $*" > {record}\ntrap "exit 0" TERM\nwhile true; do sleep 0.1; done\n',
    )
    proc = subprocess.Popen(
        ["/bin/bash", str(PORTAL_WRAPPER)],
        env={"PATH": os.defpath, "PORTAL_DIR": str(portal)},
        start_new_session=True,
    )
    try:
        wait_for(lambda: record.is_file() and record.read_text().endswith("\n"), "the portal")
        assert record.read_text().split() == [
            str(portal / "portal"),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            "11111",
            "portal.py",
        ]
        # supervisord stops the group (stopasgroup=true)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0  # a bound for a loaded machine, not a timing
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- docker/ -------------------------------------------------------------------------------


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_build_arguments_and_bases() -> None:
    text = dockerfile()
    assert "ARG SGLANG_BASE=lmsysorg/sglang:v0.5.6.post2" in text
    assert "ARG VAST_BASE=vastai/base-image:stock-ubuntu24.04-py312" in text
    assert re.search(r"^FROM \$\{VAST_BASE\} AS vast$", text, re.M)
    assert re.search(r"^FROM \$\{SGLANG_BASE\}$", text, re.M)
    assert "COPY --from=vast /opt/portal-aio /opt/portal-aio" in text
    # Caddy comes inside /opt/portal-aio: copied once (37 MB), linked onto PATH
    assert text.count("caddy_manager/caddy") == 1
    assert "RUN ln -s /opt/portal-aio/caddy_manager/caddy /usr/local/bin/caddy" in text
    # no `# syntax=` line: BuildKit would pull a frontend image for no feature used
    assert "syntax=" not in text


def test_dockerfile_installs_only_the_pinned_wheels() -> None:
    """No network in the build: pip reads the host-made wheelhouse (scripts/
    image-wheelhouse.sh) at the versions docker/constraints.txt pins."""
    text = dockerfile()
    installs = [b for b in re.split(r"^RUN ", text, flags=re.M) if " -m pip " in b]
    assert len(installs) == 4, installs  # the launcher's venv, smg's, vastai's, Jupyter's
    for block in installs:
        assert "--no-index --find-links /tmp/wheels" in block
        assert "--constraint /tmp/wheels/constraints.txt" in block
    pins = (ROOT / "docker" / "constraints.txt").read_text()
    for package in ("supervisor", "smg", "vastai", "huggingface_hub", "pydantic", "psutil"):
        assert re.search(rf"^{package}==\S+", pins, re.M), package
    assert "--format docker" in text  # the HEALTHCHECK needs the docker format (said once)


def test_dockerfile_wires_the_launcher(settings: Settings) -> None:
    text = dockerfile()
    defaults = Settings.model_fields
    python = "/opt/vast-sglang-launcher/venv/bin/python"
    assert "ENV LAUNCHER_VENV=/opt/vast-sglang-launcher/venv" in text
    assert "COPY supervisor/ /etc/supervisor/" in text
    assert defaults["supervisord_config"].default == Path("/etc/supervisor/supervisord.conf")
    option_table = str(defaults["option_table"].default)
    assert re.search(
        r'"\$\{SGLANG_PYTHON\}" -m vast_sglang_launcher\.option_table \\\n\s+--output '
        + re.escape(option_table),
        text,
    )
    assert "EXPOSE 1111 8000 8080" in text
    assert re.search(
        rf'^HEALTHCHECK .*\n\s+CMD \["{python}", "-m", "vast_sglang_launcher", "status"\]$',
        text,
        re.M,
    )
    assert f'ENTRYPOINT ["{python}", "-m", "vast_sglang_launcher", "entrypoint"]' in text


def test_dockerfile_sets_every_variable_the_supervisor_files_need() -> None:
    env_block = re.search(r"^ENV LAUNCHER_PYTHON=.*?(?=^\S)", dockerfile(), re.M | re.S)
    assert env_block
    defined = set(re.findall(r"\b([A-Z_]+)=", env_block.group(0)))
    assert env_references() <= defined
    run_dir = str(Settings.model_fields["run_dir"].default)
    log_dir = str(Settings.model_fields["log_dir"].default)
    assert f"LAUNCHER_RUN_DIR={run_dir}" in env_block.group(0)
    assert f"LAUNCHER_LOG_DIR={log_dir}" in env_block.group(0)
    assert f"mkdir -p {log_dir} {run_dir}" in dockerfile()


def test_dockerfile_stop_wait_is_the_one_entrypoint_derives() -> None:
    """`docker exec supervisorctl` uses the Dockerfile's value, a container's supervisord the
    one `entrypoint` exports: with the default settings they are the same number."""
    found = re.search(r"LAUNCHER_SUPERVISOR_STOPWAIT=(\d+)", dockerfile())
    assert found
    derived = supervisor_environment(load_settings({}))["LAUNCHER_SUPERVISOR_STOPWAIT"]
    assert found.group(1) == derived


# --- shell scripts ---------------------------------------------------------------------------


def shell_scripts() -> list[Path]:
    """Every shell script of the repository: *.sh, or a file with a sh/bash shebang. Skipped
    directories are never entered (build/ holds the image test's root filesystems)."""
    skip = {".git", ".venv", "build", "dist", "node_modules"}
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(("_cache", ".egg-info"))]
        for name in files:
            path = Path(top) / name
            if path.suffix == ".sh":
                found.append(path)
                continue
            try:
                with path.open("rb") as fh:
                    first = fh.readline(200)
            except OSError:
                continue
            if re.match(rb"#!\s*/(usr/)?bin/(env\s+)?(ba|da)?sh\b", first):
                found.append(path)
    return sorted(found)


def test_every_shell_script_passes_shellcheck() -> None:
    scripts = shell_scripts()
    assert PORTAL_WRAPPER in scripts
    done = subprocess.run([tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
