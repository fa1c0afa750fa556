"""Values users type (issue 19 items 1, 3, 6, 8; issue 20 item 5): malformed model ids, URLs
and tokens are one line naming the variable and exit 78 in every command; a pasted hub URL
becomes its repo id with a note; every output masks every secret a setting can hold; and
`settings` prints every value, marks the bad ones and exits 78 after printing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_launcher
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from vast_sglang_launcher import values
from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.settings import load_settings

REPO = str(Path(__file__).resolve().parents[1])

IDS = [
    "gpt2",
    "Qwen/Qwen2.5-7B-Instruct",
    "org/model/extra",
    "org/m--x",
    "org/m..x",
    "org/.hidden",
    "org/name-",
    "org/name.git",
    "org/caf\u00e9",
    "a" * 96,
    "a" * 97,
    "org/" + "b" * 96,
    "_x/y_",
    "x y",
    "org/",
    "-org/x",
]


@pytest.mark.parametrize("repo", IDS)
def test_the_repo_id_rule_is_huggingface_hubs(repo: str) -> None:
    # huggingface_hub 2.4.0 utils/_validators.py validate_repo_id: the real rule, compared.
    try:
        validate_repo_id(repo)
        real_ok = True
    except HFValidationError:
        real_ok = False
    assert (values.repo_id_problem(repo) is None) == real_ok


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "PYTHONPATH": REPO,
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "GPU_COUNT": "1",
    }
    return run_launcher(*args, env={**base, **env}, timeout=60)


BAD = [
    ("SGLANG_MODEL", "Qwen/Qwen2.5-7B-Instruct ", "space"),
    ("SGLANG_MODEL", "org/model/extra", "Org/Name"),
    ("SGLANG_MODEL", "org/m--x", "Org/Name"),
    ("MODEL_NAME", "org/m--x", "Org/Name"),
    ("SGLANG_MODEL", "https://example.com/Org/Name", "Org/Name"),
    ("HF_ENDPOINT", "http://h:99999", "http://host:port"),
    ("LAUNCHER_GATEWAY_URL", "http://[1.2.3.4:40510", "http://host:port"),
    ("LAUNCHER_WORKER_URL", "http://[x", "http://host:port"),
    ("LAUNCHER_GATEWAY_WORKERS", "http://127.0.0.1:1 http://[b", "http://host:port"),
    ("HF_TOKEN", "hf_abcdefgh\n", "line break"),
    ("HF_TOKEN", "hf_abcdefgh\r\n", "line break"),
    ("OPEN_BUTTON_TOKEN", "token-abcdefgh ", "space"),
    ("LAUNCHER_GATEWAY_TOKEN", "gateway-token\n", "line break"),
    ("LAUNCHER_GATEWAY_TOKEN", "t\u00f6ken-abcdefgh", "ASCII"),
    ("WEB_PASSWORD", "password-abc\n", "line break"),
]


CASES = [("plan", *bad) for bad in BAD] + [
    (command, *BAD[i]) for command in ("run", "gateway", "provision", "edge") for i in (1, 6, 9, 13)
]


@pytest.mark.parametrize(("command", "var", "value", "hint"), CASES)
def test_a_malformed_value_is_one_line_and_exit_78_in_every_command(
    tmp_path: Path, command: str, var: str, value: str, hint: str
) -> None:
    env = {
        var: value,
        "LAUNCHER_RUN_DIR": str(tmp_path / "run"),
        "LAUNCHER_LOG_DIR": str(tmp_path / "log"),
        "LAUNCHER_MARKER_DIR": str(tmp_path),
        "WORKSPACE": str(tmp_path / "ws"),
        "LAUNCHER_RUN_GATEWAY": "true",
    }
    args = [command, "--print"] if command == "edge" else [command]
    got = _cli(*args, **env)
    assert got.returncode == 78, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vast-sglang-launcher: {var}="), got.stderr
    assert hint in lines[0] and "Traceback" not in got.stderr
    if var.endswith(("TOKEN", "PASSWORD")):
        assert value.strip() not in got.stderr + got.stdout
    assert not (tmp_path / "run" / "status.json").exists()


def test_a_pasted_hub_url_is_read_as_its_repo_id_with_a_note() -> None:
    got = _cli("plan", "--json", SGLANG_MODEL="https://huggingface.co/Qwen/Qwen2.5-7B-Instruct")
    assert got.returncode == 0, got.stderr
    plan = json.loads(got.stdout)
    assert plan["argv"][plan["argv"].index("--model-path") + 1] == "Qwen/Qwen2.5-7B-Instruct"
    assert any("hub page URL" in w and "Qwen/Qwen2.5-7B-Instruct" in w for w in plan["warnings"])
    assert load_settings({"SGLANG_MODEL": "https://hf.co/org/name/tree/main"}).model == "org/name"


def test_a_malformed_model_path_in_the_args_is_refused_too() -> None:
    got = _cli("plan", SGLANG_ARGS="--model-path org/model/extra")
    assert got.returncode == 78 and "SGLANG_ARGS: --model-path 'org/model/extra'" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1


def test_a_local_directory_is_kept_and_never_called_a_repo(tmp_path: Path) -> None:
    assert load_settings({"SGLANG_MODEL": str(tmp_path)}).model == str(tmp_path)
    assert load_settings({"SGLANG_MODEL": "./models/x"}).model == "./models/x"


def test_the_edge_token_may_hold_spaces_but_not_when_it_goes_to_the_gateway() -> None:
    assert load_settings({"OPEN_BUTTON_TOKEN": 'sk "q" {x} \u20ac'}).open_button_token
    with pytest.raises(ConfigError) as info:
        load_settings(
            {
                "OPEN_BUTTON_TOKEN": "t\u00f6ken-abcdefgh",
                "LAUNCHER_GATEWAY_URL": "http://127.0.0.1:9",
            }
        )
    line = str(info.value)
    assert line.startswith("OPEN_BUTTON_TOKEN holds a character that is not ASCII")
    assert "t\u00f6ken" not in line and "\n" not in line
    got = _cli(
        "settings", OPEN_BUTTON_TOKEN="t\u00f6ken-abcdefgh", LAUNCHER_GATEWAY_URL="http://h:1"
    )
    assert got.returncode == 78
    assert "OPEN_BUTTON_TOKEN=***  # not valid: OPEN_BUTTON_TOKEN holds" in got.stdout


def test_errors_never_hold_a_token() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"HF_TOKEN": "hf_secretvalue\r\n", "OPEN_BUTTON_TOKEN": "tok secret"})
    assert "secretvalue" not in str(info.value) and "tok secret" not in str(info.value)


# --- `settings` (issue 20 item 5) ----------------------------------------------------------


def test_settings_prints_every_value_marks_the_bad_ones_and_exits_78() -> None:
    got = _cli("settings", AUTO_PARALLEL="maybe", SGLANG_PORT="80a", HF_TOKEN="hf_pasted\n")
    assert got.returncode == 78
    out = got.stdout.splitlines()
    assert "AUTO_PARALLEL='maybe'  # not valid: expected one of" in "\n".join(out)
    assert any(line.startswith("SGLANG_PORT='80a'  # not valid:") for line in out)
    assert any(line.startswith("HF_TOKEN=***  # not valid:") for line in out)
    assert "hf_pasted" not in got.stdout + got.stderr
    assert any(line == "SGLANG_HOST=127.0.0.1" for line in out)  # the good ones are shown too
    assert got.stderr.strip().splitlines() == [
        "vast-sglang-launcher: not valid: AUTO_PARALLEL, HF_TOKEN, SGLANG_PORT; fix or unset them"
    ]


# --- one masking rule (item 6) -------------------------------------------------------------

SECRET = "s3cr3t-VALUE-42"
SECRET_SETTINGS = {
    "HF_TOKEN": SECRET + "a",
    "OPEN_BUTTON_TOKEN": SECRET + "b",
    "WEB_PASSWORD": SECRET + "c",
    "LAUNCHER_GATEWAY_TOKEN": SECRET + "d",
    "SGLANG_ARGS": f"--api-key {SECRET}e --context-length 4096",
    "HF_ENDPOINT": f"http://user:{SECRET}f@127.0.0.1:9/?token={SECRET}g",
    "HOTFIX_SCRIPT": f"https://127.0.0.1:9/fix.sh?token={SECRET}h",
    "PROVISIONING_SCRIPT": f"https://{SECRET}i@127.0.0.1:9/prov.sh",
    "LAUNCHER_GATEWAY_URL": f"http://user:{SECRET}j@127.0.0.1:9",
    "LAUNCHER_WORKER_URL": f"http://127.0.0.1:9/?token={SECRET}k",
    "LAUNCHER_GATEWAY_WORKERS": f"http://u:{SECRET}l@127.0.0.1:9,http://127.0.0.1:8",
    "LAUNCHER_GATEWAY_ARGS": f"--api-key={SECRET}m",
}


def test_settings_plan_and_logs_mask_every_secret_a_setting_can_hold(tmp_path: Path) -> None:
    env = {**SECRET_SETTINGS, "SGLANG_MODEL": "org/model"}
    outputs = [_cli("settings", **env), _cli("plan", **env), _cli("plan", "--json", **env)]
    for got in outputs:
        assert got.returncode == 0, got.stderr
        assert SECRET not in got.stdout + got.stderr
    text = outputs[0].stdout
    assert "HF_ENDPOINT=http://user:***@127.0.0.1:9/?token=***" in text
    assert "SGLANG_ARGS=--api-key *** --context-length 4096" in text


def test_status_json_and_prefetch_json_mask_the_settings_secrets(tmp_path: Path) -> None:
    from vast_sglang_launcher.coldstart.progress import write_status
    from vast_sglang_launcher.logs import configure_for, get_logger
    from vast_sglang_launcher.redact import settings_secrets
    from vast_sglang_launcher.supervise.status_writer import StatusFile

    settings = load_settings(SECRET_SETTINGS)
    secrets = settings_secrets(settings)
    status = StatusFile(tmp_path / "status.json", secrets)
    status.update(message=f"registered at {settings.gateway_url}", state="ready")
    prefetch = tmp_path / "prefetch.json"
    write_status(prefetch, {"detail": f"cannot reach {settings.hf_endpoint}"}, secrets)
    for path in (tmp_path / "status.json", prefetch):
        assert SECRET not in path.read_text()
        assert path.stat().st_mode & 0o777 == 0o600
    log = tmp_path / "log.txt"
    with log.open("w") as stream:
        configure_for(settings, stream=stream)
        get_logger("t").info(f"registered {settings.gateway_url}", token=SECRET + "d")
    assert "registered" in log.read_text() and SECRET not in log.read_text()


def test_an_unexpected_registration_error_is_visible_in_status() -> None:
    import asyncio

    from vast_sglang_launcher.scaleout.membership import GatewayMembership, Timing

    class Log:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def error(self, line: str, **_: object) -> None:
            self.lines.append(line)

        warning = info = error

    class Api:  # the launcher's own GatewayApi, whose request raises what httpx would
        base_url = "http://127.0.0.1:9"

        async def workers(self) -> object:
            raise UnicodeEncodeError("ascii", "t\u00f6ken", 1, 2, "ordinal not in range")

    notes: list[dict[str, object]] = []
    log = Log()

    async def main() -> None:
        m = GatewayMembership(Api(), "http://w:1", None, Timing(1, 1, 1, 1), log, notes.append)  # type: ignore[arg-type]
        m.on_ready()
        while notes[-1]["state"] != "failed":
            await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 30))
    assert "UnicodeEncodeError" in str(notes[-1]["message"]) and log.lines
    assert "t\u00f6ken" not in str(notes[-1]) + "".join(log.lines)


def test_run_writes_no_secret_anywhere(tmp_path: Path) -> None:
    """`run` with a known secret in every setting that can hold one, the gateway unreachable
    (its retry lines name the URL): no output and no file the launcher writes holds it."""
    from conftest import LauncherRig

    rig = LauncherRig(tmp_path)
    try:
        env = dict(SECRET_SETTINGS)
        launcher = rig.start(**env)
        rig.wait_state("ready")
        rig.wait_for(
            lambda: ((rig.status() or {}).get("gateway") or {}).get("state") == "retrying",
            "the gateway's retry state",
        )
        shown = [rig.cli("status", **env), rig.cli("status", "--json", **env)]
        launcher.terminate()
        assert rig.wait_exit(launcher) == 0
    finally:
        rig.cleanup()
    texts = [rig.stdout(), rig.stderr(), *(c.stdout + c.stderr for c in shown)]
    assert "gateway registration failed" in rig.stderr()  # the retry lines were written
    for text in texts:
        assert SECRET not in text
    for path in tmp_path.rglob("*"):
        if not path.is_file() or rig.state_dir in path.parents:
            continue  # the stand-in's own records of what it was given
        if path.name == "server.json":  # the real command line, for a later clean-up
            assert path.stat().st_mode & 0o777 == 0o600
            continue
        assert SECRET not in path.read_text(errors="replace"), path
