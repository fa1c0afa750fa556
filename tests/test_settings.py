"""The settings class: names, defaults, aliases, and the settings reference (docs/settings.md)
kept equal to it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.settings import Settings, load_settings
from vast_sglang_launcher.settings_doc import BEGIN, END, markdown_page, markdown_table

REPO = Path(__file__).resolve().parents[1]

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "settings.md"
STALE = "docs/settings.md is stale: run `vast-sglang-launcher settings --update docs/settings.md`"


def test_reference_table_equals_the_settings_class() -> None:
    text = REFERENCE.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    assert text[start:end].strip() == markdown_table(), STALE
    assert text == markdown_page(), STALE


def test_readme_links_the_reference() -> None:
    assert "(docs/settings.md)" in (ROOT / "README.md").read_text()


def test_every_field_is_documented() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name} has no docstring"


def test_defaults() -> None:
    s = load_settings({})
    assert (s.model, s.sglang_command, s.sglang_host, s.sglang_port) == (
        None,
        "sglang serve",
        "127.0.0.1",
        18000,
    )
    assert s.auto_parallel is True
    assert s.workspace == Path("/workspace")
    assert s.sglang_args_file == Path("/etc/sglang-args.conf")
    assert s.marker(".provisioning") == Path("/.provisioning")
    assert s.hub_cache == Path("/workspace/.cache/huggingface/hub")


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "Yes"])
def test_truthy(value: str) -> None:
    assert load_settings({"AUTO_PARALLEL": value}).auto_parallel is True


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "NO"])
def test_falsy(value: str) -> None:
    assert load_settings({"AUTO_PARALLEL": value}).auto_parallel is False


def test_use_all_gpus_is_the_old_name() -> None:
    assert load_settings({"USE_ALL_GPUS": "false"}).auto_parallel is False
    assert load_settings({"USE_ALL_GPUS": "false", "AUTO_PARALLEL": "true"}).auto_parallel


def test_empty_means_unset_except_for_visibility() -> None:
    s = load_settings({"GPU_COUNT": "", "SGLANG_PORT": " ", "CUDA_VISIBLE_DEVICES": ""})
    assert s.gpu_count is None and s.sglang_port == 18000
    assert s.cuda_visible_devices == ""


def test_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^LAUNCHER_LIVENESS_FAILURES='0' is not valid"):
        load_settings({"LAUNCHER_LIVENESS_FAILURES": "0"})


def test_secrets_do_not_print() -> None:
    s = load_settings({"HF_TOKEN": "hf_abc", "OPEN_BUTTON_TOKEN": "tok"})
    assert "hf_abc" not in repr(s) and "tok'" not in repr(s)


# --- outside a container the image's directories are not created (issue 20) -----------------


def test_container_is_known_by_its_runtime_marker(tmp_path: Path) -> None:
    from vast_sglang_launcher.dirs import in_container

    assert not in_container(tmp_path)
    (tmp_path / ".dockerenv").touch()
    assert in_container(tmp_path)
    (tmp_path / ".dockerenv").unlink()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").touch()
    assert in_container(tmp_path)


def test_outside_a_container_missing_default_dirs_are_named_not_created(tmp_path: Path) -> None:
    from vast_sglang_launcher.dirs import require_writable_dirs

    mine = tmp_path / "mine"
    s = load_settings({"SGLANG_MODEL": "x", "WORKSPACE": str(mine)})
    missing = [f for f in ("run_dir", "log_dir") if not getattr(s, f).exists()]
    if missing:
        with pytest.raises(ConfigError) as info:
            require_writable_dirs(s, "run_dir", "log_dir", "workspace", container=False)
        line = str(info.value)
        assert line.startswith("this is not a container, and LAUNCHER_")
        assert "creates the image's directories only in a container" in line
        assert "WORKSPACE" not in line  # set by the user: created
        for field in missing:
            assert not getattr(s, field).exists()
    # what the user set is created, outside a container too
    require_writable_dirs(s, "workspace", container=False)
    assert mine.is_dir()


# --- WEB_USERNAME is checked when the settings load, for every command ---------------------


def test_a_basic_user_name_with_a_colon_is_refused_when_the_settings_load() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"WEB_USERNAME": "a:b"})
    assert str(info.value) == (
        "WEB_USERNAME='a:b' is not valid: HTTP Basic user names cannot contain ':'; "
        "fix or unset WEB_USERNAME"
    )


def test_any_command_refuses_the_colon_in_one_line_exit_78(tmp_path: Path) -> None:
    # `plan` never renders the Caddyfile: the refusal comes from the settings alone.
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": str(REPO),
        "LAUNCHER_RUN_DIR": str(tmp_path / "run"),
        "LAUNCHER_LOG_DIR": str(tmp_path / "logs"),
        "HF_HUB_OFFLINE": "1",
        "GPU_COUNT": "1",
        "SGLANG_MODEL": str(tmp_path),
        "WEB_USERNAME": "ops:x",
    }
    done = subprocess.run(
        [sys.executable, "-m", "vast_sglang_launcher", "plan"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 78
    assert done.stderr.splitlines() == [
        "vast-sglang-launcher: WEB_USERNAME='ops:x' is not valid: HTTP Basic user names "
        "cannot contain ':'; fix or unset WEB_USERNAME"
    ]
    assert done.stdout == ""
