"""Which option table the plan reads with, and the plan saying which and why."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import conftest
import pytest
from conftest import run_launcher

from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.plan.installed import Installed
from vast_sglang_launcher.plan.options import snapshot_versions
from vast_sglang_launcher.plan.table_choice import choose_table
from vast_sglang_launcher.plan.versions import version_key

DATA = Path(__file__).resolve().parents[2] / "vast_sglang_launcher" / "plan" / "data"
BUILD_TABLE = Path("/etc/vast-sglang-launcher/sglang-options.json")


def install_sglang(prefix: Path, version: str, python: str = "python3.12") -> Path:
    """An install prefix whose bin/sglang belongs to sglang ``version`` (only its metadata:
    the launcher must never import sglang to learn the version)."""
    site = prefix / "lib" / python / "site-packages"
    info = site / f"sglang-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sglang\nVersion: {version}\n")
    (site / "sglang").mkdir()
    (site / "sglang" / "__init__.py").write_text("raise SystemExit('sglang was imported')\n")
    script = prefix / "bin" / "sglang"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!{prefix / 'bin' / 'python3'}\nraise SystemExit(1)\n")
    script.chmod(0o755)
    return script


def plan_json(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    base = {"PATH": os.environ.get("PATH", os.defpath), "SGLANG_MODEL": "org/m", "GPU_COUNT": "1"}
    return conftest.plan_json(tmp_path, base | env)


@pytest.fixture(autouse=True)
def _no_build_table() -> None:
    # The tests of the fallbacks need a machine without an image's table.
    assert not BUILD_TABLE.exists(), f"{BUILD_TABLE} exists on this machine"


RELEASES: list[str] = sorted(snapshot_versions(), key=lambda v: version_key(v) or ())


@pytest.mark.parametrize("version", RELEASES)
def test_installed_version_picks_its_snapshot(tmp_path: Path, version: str) -> None:
    script = install_sglang(tmp_path / "venv", version)
    data = plan_json(tmp_path, {"SGLANG_COMMAND": f"{script} serve"})
    table = data["option_table"]
    assert (table["source"], table["sglang_version"]) == (
        f"snapshot server-args-{version}.json",
        version,
    )
    assert f"the snapshot of the installed SGLang {version}" in table["why"]
    assert str(tmp_path / "venv" / "lib" / "python3.12" / "site-packages") in table["why"]
    assert not any("no option table ships" in w for w in data["warnings"])


def test_command_found_on_path(tmp_path: Path) -> None:
    script = install_sglang(tmp_path / "usr", "0.5.8")
    data = plan_json(tmp_path, {"PATH": f"{script.parent}:/usr/bin:/bin"})
    assert data["option_table"]["sglang_version"] == "0.5.8"


def test_unknown_release_uses_the_nearest_older_snapshot_with_a_warning(tmp_path: Path) -> None:
    script = install_sglang(tmp_path / "venv", "0.5.9")
    data = plan_json(tmp_path, {"SGLANG_COMMAND": f"{script} serve"})
    assert data["option_table"]["sglang_version"] == "0.5.8"
    assert "the nearest older snapshot is SGLang 0.5.8" in data["option_table"]["why"]
    assert any(
        "installed SGLang 0.5.9" in w and "SGLang 0.5.8's table" in w for w in data["warnings"]
    )


@pytest.mark.parametrize(
    ("installed", "chosen"),
    [
        ("0.5.9", "0.5.8"),
        ("0.5.10rc0", "0.5.8"),
        ("0.5.11", "0.5.10"),
        ("0.5.13", "0.5.12"),
        ("0.5.15", "0.5.14"),
        ("0.5.17.post1", "0.5.16"),
        ("0.5.19", "0.5.18"),
        ("0.5.21", "0.5.20"),
        ("0.5.22.post1", "0.5.22"),
        ("0.5.23rc1", "0.5.22"),
        ("0.5.24", "0.5.23"),
        ("0.6.0", "0.5.23"),
    ],
)
def test_each_release_in_between_reads_with_the_nearest_older_table(
    tmp_path: Path, installed: str, chosen: str
) -> None:
    """An option is in the table of the release that added it and of every later one, so
    the nearest older table misses only options added after it."""
    choice = choose_table(tmp_path / "absent.json", False, Installed(installed, "/opt/venv"))
    assert choice.table.version == chosen
    assert f"the nearest older snapshot is SGLang {chosen}" in choice.why
    assert len(choice.warnings) == 1 and f"installed SGLang {installed}" in choice.warnings[0]


def test_every_shipped_table_is_named_for_its_release() -> None:
    for version in snapshot_versions():
        table = json.loads((DATA / f"server-args-{version}.json").read_text())
        assert table["sglang_version"] == version


def test_release_older_than_every_snapshot_uses_the_oldest(tmp_path: Path) -> None:
    script = install_sglang(tmp_path / "venv", "0.4.10")
    data = plan_json(tmp_path, {"SGLANG_COMMAND": f"{script} serve"})
    assert data["option_table"]["sglang_version"] == "0.5.6.post2"
    assert any("0.4.10" in w and "0.5.6.post2" in w for w in data["warnings"])


def test_python_m_command_reads_that_pythons_packages(tmp_path: Path) -> None:
    prefix = tmp_path / "venv"
    install_sglang(prefix, "0.5.23")
    python = prefix / "bin" / "python3"
    python.symlink_to(sys.executable)
    data = plan_json(tmp_path, {"SGLANG_COMMAND": f"{python} -m sglang.launch_server"})
    assert data["option_table"]["sglang_version"] == "0.5.23"


def test_no_sglang_anywhere_uses_the_newest_snapshot(tmp_path: Path) -> None:
    data = plan_json(tmp_path, {"SGLANG_COMMAND": "no-such-sglang serve"})
    newest = max(snapshot_versions(), key=lambda v: version_key(v) or ())
    assert data["option_table"]["sglang_version"] == newest
    assert "no installed sglang found" in data["option_table"]["why"]


def test_launcher_option_table_comes_first(tmp_path: Path) -> None:
    script = install_sglang(tmp_path / "venv", "0.5.23")
    table = DATA / "server-args-0.5.8.json"
    data = plan_json(
        tmp_path, {"SGLANG_COMMAND": f"{script} serve", "LAUNCHER_OPTION_TABLE": str(table)}
    )
    assert data["option_table"] == {
        "source": str(table),
        "sglang_version": "0.5.8",
        "why": "LAUNCHER_OPTION_TABLE is set",
    }


def test_launcher_option_table_that_is_missing_is_a_config_error(tmp_path: Path) -> None:
    proc = run_launcher(
        "plan",
        env={
            "PATH": "/usr/bin:/bin",
            "SGLANG_MODEL": "org/m",
            "LAUNCHER_OPTION_TABLE": str(tmp_path / "nope.json"),
            "SGLANG_ARGS_FILE": str(tmp_path / "none.conf"),
        },
    )
    assert proc.returncode == 78
    assert proc.stderr.strip().splitlines() == [
        f"vast-sglang-launcher: LAUNCHER_OPTION_TABLE={tmp_path / 'nope.json'} is not a file; "
        "point it at a table written by `vast-sglang-launcher option-table --output`, or "
        "unset it"
    ]


def test_plan_text_says_which_table_and_why(tmp_path: Path) -> None:
    table = DATA / "server-args-0.5.23.json"
    proc = run_launcher(
        "plan",
        env={
            "PATH": "/usr/bin:/bin",
            "SGLANG_MODEL": "org/m",
            "GPU_COUNT": "1",
            "HF_HUB_OFFLINE": "1",
            "LAUNCHER_OPTION_TABLE": str(table),
            "SGLANG_ARGS_FILE": str(tmp_path / "none.conf"),
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"SGLang options: table of SGLang 0.5.23 ({table}): LAUNCHER_OPTION_TABLE is set"
        in proc.stdout.splitlines()
    )


# --- the choice itself, for the table written at image build -------------------------------


def test_table_written_at_build_is_used_and_checked_against_the_installed(
    tmp_path: Path,
) -> None:
    built = tmp_path / "sglang-options.json"
    built.write_text((DATA / "server-args-0.5.8.json").read_text())
    same = choose_table(built, False, Installed("0.5.8", "/usr/lib/python3/dist-packages"))
    assert same.table.version == "0.5.8" and same.warnings == ()
    assert same.why == "written at image build from the installed sglang"
    other = choose_table(built, False, Installed("0.5.23", "/opt/venv"))
    assert other.table.source == str(built)
    assert other.warnings == (
        f"the option table written at image build ({built}) is for SGLang 0.5.8, but SGLang "
        f"0.5.23 is installed (/opt/venv): rewrite it with `option-table --output {built}`",
    )


def test_unreadable_table_is_a_config_error(tmp_path: Path) -> None:
    built = tmp_path / "sglang-options.json"
    built.write_text("{not json")
    with pytest.raises(ConfigError, match=r"LAUNCHER_OPTION_TABLE=.* is unreadable"):
        choose_table(built, False, None)


def test_release_order() -> None:
    ordered = [
        "0.4.10",
        "0.5.6",
        "0.5.6.post2",
        "0.5.8rc1",
        "0.5.8",
        "0.5.9.dev0",
        "0.5.9rc1",
        "0.5.23",
    ]
    keys = [version_key(v) for v in ordered]
    assert all(k is not None for k in keys)
    assert sorted(ordered, key=lambda v: version_key(v) or ()) == ordered
    assert version_key("not-a-version") is None
