"""No launcher setting shares a name with a variable SGLang reads (issue 17, item 2), except
the few that mean the same thing to both; an old name that collided still works, with a
warning, and never reaches the server.

The names SGLang reads come from tests/data/sglang-env-names.txt, extracted from the wheels
of every supported release by scripts/extract-sglang-env-names.py (its docstring says how).
"""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import LauncherRig, run_launcher
from pydantic import AliasChoices

from vast_sglang_launcher.edge.portal import portal_entries
from vast_sglang_launcher.settings import DEPRECATED_NAMES, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
NAMES = ROOT / "tests" / "data" / "sglang-env-names.txt"

SHARED = {
    # The same variable, read by both with the same meaning, on purpose.
    "CUDA_VISIBLE_DEVICES": "the GPUs the server may use; the launcher counts them",
    "HF_HOME": "the hub cache; the launcher's prefetch fills the cache the server reads",
    "HF_HUB_OFFLINE": "no hub requests, for the prefetch and the server alike",
    "HF_TOKEN": "the hub token, for the prefetch and the server alike",
}


def sglang_names() -> set[str]:
    lines = NAMES.read_text().splitlines()
    assert lines and lines[0].startswith("# environment variables SGLang reads; releases: ")
    releases = lines[0].split("releases: ", 1)[1].split()
    assert {"0.5.6.post2", "0.5.23"} <= set(releases) and len(releases) >= 10
    return {line for line in lines if line and not line.startswith("#")}


def launcher_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias)
    return names


def test_the_extracted_list_holds_what_sglang_reads() -> None:
    names = sglang_names()
    # 0.5.6.post2 utils/common.py get_open_port; 0.5.23 environ.py Envs.SGLANG_PORT
    assert {"SGLANG_PORT", "SGL_FORCE_SHUTDOWN", "SGLANG_FORCE_SHUTDOWN"} <= names


def test_no_launcher_setting_is_named_like_a_variable_sglang_reads() -> None:
    collisions = launcher_names() & sglang_names()
    assert collisions - set(SHARED) - set(DEPRECATED_NAMES) == set()
    for new in DEPRECATED_NAMES.values():
        assert new in launcher_names() and new not in sglang_names()


def test_the_old_port_name_still_works_and_says_so() -> None:
    assert load_settings({"SGLANG_PORT": "18001"}).sglang_port == 18001
    assert load_settings({"LAUNCHER_SERVER_PORT": "18002"}).sglang_port == 18002
    both = {"LAUNCHER_SERVER_PORT": "18002", "SGLANG_PORT": "18001"}
    assert load_settings(both).sglang_port == 18002  # then SGLANG_PORT is SGLang's own
    done = run_launcher(
        "plan",
        "--json",
        env={
            "PATH": "/usr/bin:/bin",
            "SGLANG_PORT": "18001",
            "GPU_COUNT": "1",
            "SGLANG_ARGS_FILE": "/nonexistent",
            "HF_HUB_OFFLINE": "1",
        },
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "SGLANG_PORT is deprecated" in done.stderr
    assert "set LAUNCHER_SERVER_PORT instead" in done.stderr


def test_the_old_port_name_is_the_launchers_and_never_reaches_the_server(
    rig: LauncherRig,
) -> None:
    port = rig.env.pop("LAUNCHER_SERVER_PORT")
    launcher = rig.start(SGLANG_PORT=port)
    rig.wait_state("ready", 60)
    (start,) = rig.starts()
    assert int(start["args"]["port"]) == int(port)
    assert start["env"]["SGLANG_PORT"] is None
    assert "SGLANG_PORT is deprecated" in rig.stderr()
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, 60) == 0


def test_with_the_new_name_set_sglang_port_is_sglangs_own(rig: LauncherRig) -> None:
    launcher = rig.start(SGLANG_PORT="29000")
    rig.wait_state("ready", 60)
    (start,) = rig.starts()
    assert int(start["args"]["port"]) == rig.port
    assert start["env"]["SGLANG_PORT"] == "29000"
    assert "deprecated" not in rig.stderr()
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, 60) == 0


def test_the_default_portal_follows_the_server_port() -> None:
    settings = load_settings({"LAUNCHER_SERVER_PORT": "19000"})
    entries = {e.external: e.internal for e in portal_entries(settings)}
    assert entries[8000] == 19000
    assert {e.external: e.internal for e in portal_entries(load_settings({}))}[8000] == 18000
