"""The command line as a newcomer meets it: help, usage errors, closed pipes, first-try errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import launcher_argv, launcher_env, run_launcher

from vast_sglang_launcher.cli import _COMMANDS
from vast_sglang_launcher.settings_doc import markdown_page
from vast_sglang_launcher.supervise.status_writer import StatusFile


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """A hermetic environment: every directory under tmp, no hub access."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "LAUNCHER_RUN_DIR": str(tmp / "run"),
        "LAUNCHER_LOG_DIR": str(tmp / "logs"),
        "LAUNCHER_MARKER_DIR": str(tmp / "markers"),
        "WORKSPACE": str(tmp / "workspace"),
        "SGLANG_ARGS_FILE": str(tmp / "no-args-file"),
        "HF_HUB_OFFLINE": "1",
        "GPU_COUNT": "2",
    }
    return {**env, **extra}


def _launcher(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_launcher(*args, env=_env(tmp, **env), timeout=60)


# --- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_each_command_explains_itself(tmp_path: Path, command: str) -> None:
    result = _launcher(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"usage: vast-sglang-launcher {command}")
    _, does, _, exits = _COMMANDS[command]
    assert does.split()[0] in out and len(does) > 80
    assert "settings read most:" in out and "exit status:" in out
    for code, _meaning in exits:
        assert f"\n  {code} " in out


def test_settings_help_says_it_prints_current_values(tmp_path: Path) -> None:
    out = " ".join(_launcher(tmp_path, "settings", "--help").stdout.split())
    assert "with the value it has now" in out and "booleans as true/false" in out


def test_settings_prints_values_in_the_environments_vocabulary(tmp_path: Path) -> None:
    result = _launcher(tmp_path, "settings", AUTO_PARALLEL="no", OPEN_BUTTON_TOKEN="s3cret")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "AUTO_PARALLEL=false" in lines and "ENABLE_AUTH=true" in lines
    assert "ENABLE_HTTPS=false" in lines and "SGLANG_MODEL=" in lines
    assert "True" not in result.stdout and "False" not in result.stdout
    assert "s3cret" not in result.stdout


def test_unknown_option_shows_the_commands_usage(tmp_path: Path) -> None:
    result = _launcher(tmp_path, "plan", "--jsn")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: vast-sglang-launcher plan [-h] [--json]")
    assert "unrecognized arguments: --jsn (did you mean --json?)" in result.stderr
    assert result.stdout == ""


# --- the settings reference -----------------------------------------------------------------


def test_update_writes_the_reference_and_leaves_other_files_alone(tmp_path: Path) -> None:
    reference = tmp_path / "docs" / "settings.md"
    result = _launcher(tmp_path, "settings", "--update", str(reference))
    assert result.returncode == 0 and result.stdout == f"{reference}: updated\n"
    assert reference.read_text() == _launcher(tmp_path, "settings", "--markdown").stdout
    assert reference.read_text() == markdown_page()
    again = _launcher(tmp_path, "settings", "--update-readme", str(reference))
    assert again.returncode == 0 and again.stdout == f"{reference}: already current\n"

    readme = tmp_path / "README.md"
    readme.write_text("# A README without the table\n")
    refused = _launcher(tmp_path, "settings", "--update-readme", str(readme))
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "docs/settings.md" in refused.stderr
    assert readme.read_text() == "# A README without the table\n"


# --- a reader that goes away ----------------------------------------------------------------


def _ready_status(run_dir: Path) -> None:
    """A status.json written by a live launcher (this process), with many lines to print."""
    import psutil

    me = psutil.Process()
    status = StatusFile(
        run_dir / "status.json", launcher_pid=me.pid, launcher_started=me.create_time()
    )
    status.update(state="ready", argv=["sglang", "serve"], last_error=["line"] * 40)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("plan",), {"SGLANG_MODEL": "org/model"}),
        (("plan", "--json"), {"SGLANG_MODEL": "org/model"}),
        (("settings",), {}),
        (("settings", "--markdown"), {}),
        (("status",), {}),
        (("status", "--json"), {}),
    ],
)
def test_a_closed_pipe_is_a_quiet_exit(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    """The reader of stdout is gone before the command writes (what `| head -1` comes to)."""
    _ready_status(tmp_path / "run")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            launcher_argv(*args),
            env=launcher_env(_env(tmp_path, **env)),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141  # as a shell reports a tool killed by SIGPIPE


@pytest.mark.parametrize(
    "pipeline",
    [
        "vast-sglang-launcher plan | head -1",
        "vast-sglang-launcher settings | head",
        "vast-sglang-launcher status | head -2",
    ],
)
def test_piping_to_head_prints_no_traceback(tmp_path: Path, pipeline: str) -> None:
    _ready_status(tmp_path / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "vast-sglang-launcher"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m vast_sglang_launcher "$@"\n')
    script.chmod(0o755)
    env = _env(tmp_path, SGLANG_MODEL="org/model")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = subprocess.run(
        ["bash", "-c", pipeline], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) in (1, 2, 10)
    assert result.stderr == ""


# --- a first try outside a container --------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("run", "LAUNCHER_RUN_DIR"),
        ("run", "LAUNCHER_LOG_DIR"),
        ("run", "WORKSPACE"),
        ("provision", "LAUNCHER_MARKER_DIR"),
        ("provision", "LAUNCHER_LOG_DIR"),
    ],
)
def test_a_directory_it_cannot_use_is_named(tmp_path: Path, command: str, variable: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    state = tmp_path / "standin-state"
    state.mkdir()
    result = _launcher(
        tmp_path,
        command,
        **{
            variable: str(blocker / "dir"),
            "SGLANG_MODEL": "org/model",
            "SGLANG_COMMAND": f"{sys.executable} {Path(__file__).parent / 'sglang_standin.py'}",
            "STANDIN_STATE_DIR": str(state),
        },
    )
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"vast-sglang-launcher: {variable}={blocker / 'dir'} ")
    assert f"set {variable} to a directory you can write" in result.stderr
    assert "Try it without a GPU" in result.stderr
    assert list(state.iterdir()) == []  # no server was started
    assert not (tmp_path / "run" / "status.json").exists()


def test_status_json_of_a_missing_file_still_parses(tmp_path: Path) -> None:
    result = _launcher(tmp_path, "status", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["launcher_alive"] is False


def test_every_directory_it_cannot_use_is_named_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _launcher(
        tmp_path,
        "run",
        SGLANG_MODEL="org/model",
        LAUNCHER_RUN_DIR=str(blocker / "run"),
        WORKSPACE=str(blocker / "workspace"),
    )
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"LAUNCHER_RUN_DIR={blocker / 'run'} (Not a directory)" in result.stderr
    assert f"WORKSPACE={blocker / 'workspace'} (Not a directory)" in result.stderr
    assert "set LAUNCHER_RUN_DIR, WORKSPACE to directories you can write" in result.stderr
    assert "LAUNCHER_LOG_DIR" not in result.stderr
