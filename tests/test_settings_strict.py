"""Strict values (issue 11): no input gives a traceback; each bad value is one line naming the
variable, and the command exits 78. ASCII digits, finite bounded numbers, one boolean
vocabulary, paths the kernel accepts, one-line URLs, UTF-8 only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import launcher_argv

from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.knob_types import MAX_SECONDS
from vast_sglang_launcher.settings import (
    BOOL_VOCABULARY,
    Settings,
    env_name,
    load_settings,
)

REPO = str(Path(__file__).resolve().parents[1])


def _names(kind: object) -> list[str]:
    found = []
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if annotation is kind or str(annotation).startswith(
            f"typing.Optional[typing.Annotated[{kind}"
        ):
            found.append(env_name(name))
    return found


BOOLS = _names(bool)
SECONDS = _names(float)
INTS = [*_names(int), "GPU_COUNT"]
PATHS = [*_names(Path), "HF_HOME", "HF_HUB_CACHE", "LAUNCHER_PIP_PYTHON"]


def error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return str(info.value)


def test_the_kinds_were_found() -> None:
    def count(word: str) -> int:
        return sum(word in str(f.annotation) for f in Settings.model_fields.values())

    assert "ENABLE_AUTH" in BOOLS and "AUTH_LINK_LOGIN" in BOOLS and len(BOOLS) == count("bool")
    assert "LAUNCHER_STOP_TIMEOUT" in SECONDS and len(SECONDS) == count("float")
    assert "LAUNCHER_SERVER_PORT" in INTS and "AUTH_COOKIE_MAX_AGE" in INTS
    assert "LAUNCHER_RUN_DIR" in PATHS and "HF_HOME" in PATHS


# --- booleans ----------------------------------------------------------------------------------


@pytest.mark.parametrize("var", BOOLS)
@pytest.mark.parametrize(
    "value, expected",
    [
        *[("true", True), ("TRUE", True), ("1", True), ("yes", True), (" Yes ", True)],
        *[("false", False), ("False", False), ("0", False), ("no", False), ("NO", False)],
    ],
)
def test_the_boolean_vocabulary(var: str, value: str, expected: bool) -> None:
    settings = load_settings({var: value})
    field = next(n for n in Settings.model_fields if env_name(n) == var)
    assert getattr(settings, field) is expected


@pytest.mark.parametrize("var", BOOLS)
@pytest.mark.parametrize("value", ["off", "on", "n", "y", "f", "t", "2", "enable", "falsch", "０"])
def test_other_words_are_refused_and_the_error_lists_exactly_the_vocabulary(
    var: str, value: str
) -> None:
    message = error({var: value})
    assert message == (
        f"{var}={value!r} is not valid: expected one of {BOOL_VOCABULARY}; fix or unset {var}"
    )
    assert BOOL_VOCABULARY == "true, false, 1, 0, yes, no (any case)"


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("var", SECONDS)
@pytest.mark.parametrize(
    "value", ["inf", "-inf", "nan", "Infinity", "1e300", "1e3", "٣٠", "3_0", "0x10", "-1", "0"]
)
def test_seconds_are_finite_ascii_and_positive(var: str, value: str) -> None:
    message = error({var: value})
    assert message.startswith(f"{var}={value!r} is not valid: ")
    assert "\n" not in message


@pytest.mark.parametrize("var", SECONDS)
def test_seconds_are_bounded(var: str) -> None:
    assert "less than or equal to 2592000" in error({var: "99999999999"})
    field = next(n for n in Settings.model_fields if env_name(n) == var)
    assert getattr(load_settings({var: "2592000"}), field) == MAX_SECONDS
    assert getattr(load_settings({var: "0.25"}), field) == 0.25


@pytest.mark.parametrize("var", INTS)
@pytest.mark.parametrize("value", ["٢٨٠٠٠", "28_000", "²", "1.5", "9" * 5000, "0x10", "+-1"])
def test_integers_are_ascii_digits(var: str, value: str) -> None:
    message = error({var: value})
    assert "\n" not in message and len(message) < 300
    assert message.startswith(f"{var}=")


def test_integers_are_bounded() -> None:
    assert "less than or equal to 65535" in error({"SGLANG_PORT": "65536"})
    assert "less than or equal to 1024" in error({"GPU_COUNT": "100000"})
    assert "greater than or equal to 60" in error({"AUTH_COOKIE_MAX_AGE": "59"})
    assert load_settings({"SGLANG_PORT": " 28000 "}).sglang_port == 28000


@pytest.mark.parametrize("value", ["²", "9" * 5000, "28_000", "٢٨٠٠٠", "0", "65536", "80;81"])
def test_auth_exclude_is_ports_in_ascii_digits(value: str) -> None:
    message = error({"AUTH_EXCLUDE": value})
    assert message.startswith("AUTH_EXCLUDE=") and "\n" not in message and len(message) < 400


def test_auth_exclude_accepts_commas_and_spaces() -> None:
    assert load_settings({"AUTH_EXCLUDE": " 1111, 8000 22"}).auth_exclude_ports == {1111, 8000, 22}


# --- text and paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("var", [*PATHS, "PROVISIONING_SCRIPT", "HOTFIX_SCRIPT", "SGLANG_MODEL"])
@pytest.mark.parametrize("value", ["/" + "a" * 100_000, "/x/" + "b" * 256 + "/y"])
def test_paths_the_kernel_would_refuse_are_refused(var: str, value: str) -> None:
    message = error({var: value})
    assert message.startswith(f"{var}=") and "\n" not in message and len(message) < 300


@pytest.mark.parametrize(
    "var", ["HF_ENDPOINT", "HOTFIX_SCRIPT", "PROVISIONING_SCRIPT", "LAUNCHER_RUN_DIR"]
)
@pytest.mark.parametrize("tail", ["\n2025-01-01 [info] forged line", "\r", "\x1b[2J", "\u2028"])
def test_a_control_character_in_a_url_or_path_is_refused(var: str, tail: str) -> None:
    message = error({var: "https://example.invalid/s.sh" + tail})
    assert message.count("\n") == 0
    assert "newline or another control character" in message


def test_a_long_value_is_shortened_in_the_error() -> None:
    message = error({"SGLANG_PORT": "1" * 100_000})
    assert "(100000 characters)" in message and len(message) < 300


def test_a_secret_is_never_shown_in_an_error() -> None:
    message = error({"OPEN_BUTTON_TOKEN": "secret-\udcff", "WEB_PASSWORD": "pw-\udcfe"})
    assert "secret" not in message and "pw-" not in message
    assert message.splitlines() == [
        "OPEN_BUTTON_TOKEN is not valid: it contains bytes that are not UTF-8; fix or unset "
        "OPEN_BUTTON_TOKEN",
        "WEB_PASSWORD is not valid: it contains bytes that are not UTF-8; fix or unset "
        "WEB_PASSWORD",
    ]


# --- through the command line: exit 78, one line, no traceback ----------------------------------


BAD: list[tuple[dict[bytes, bytes], str]] = [
    ({b"PROVISIONING_SCRIPT": b"/opt/\xff\xfe.sh"}, "PROVISIONING_SCRIPT"),
    ({b"LAUNCHER_STOP_TIMEOUT": b"inf"}, "LAUNCHER_STOP_TIMEOUT"),
    ({b"LAUNCHER_STARTUP_TIMEOUT": b"1e309"}, "LAUNCHER_STARTUP_TIMEOUT"),
    ({b"LAUNCHER_RUN_DIR": b"/" + b"r" * 100_000}, "LAUNCHER_RUN_DIR"),
    ({b"PROVISIONING_SCRIPT": b"/" + b"p" * 100_000}, "PROVISIONING_SCRIPT"),
    ({b"AUTH_EXCLUDE": "²".encode()}, "AUTH_EXCLUDE"),
    ({b"AUTH_EXCLUDE": b"9" * 5000}, "AUTH_EXCLUDE"),
    ({b"ENABLE_AUTH": b"off"}, "ENABLE_AUTH"),
    ({b"HF_ENDPOINT": b"https://hub.invalid\n[info] forged"}, "HF_ENDPOINT"),
    ({b"SGLANG_PORT": "٢٨٠٠٠".encode()}, "SGLANG_PORT"),
]


# `status` is not here: it is the HEALTHCHECK, reads only LAUNCHER_RUN_DIR with the standard
# library, and answers "not healthy" (exit 1) in one line, as the next test checks.
@pytest.mark.parametrize("command", [["plan"], ["provision"], ["entrypoint"], ["edge", "--print"]])
@pytest.mark.parametrize("env, var", BAD, ids=[var + str(i) for i, (_, var) in enumerate(BAD)])
def test_commands_exit_78_with_one_line(
    tmp_path: Path, command: list[str], env: dict[bytes, bytes], var: str
) -> None:
    base = {
        b"PATH": os.environ.get("PATH", os.defpath).encode(),
        b"PYTHONPATH": REPO.encode(),
        b"LAUNCHER_MARKER_DIR": str(tmp_path).encode(),
        b"LAUNCHER_RUN_DIR": str(tmp_path / "run").encode(),
        b"LAUNCHER_LOG_DIR": str(tmp_path / "logs").encode(),
    }
    proc = subprocess.run(
        launcher_argv(*command),
        env={**base, **env},
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 78, stderr
    assert proc.stdout == b""
    assert stderr.startswith(f"vast-sglang-launcher: {var}") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr and len(stderr) < 400
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("env, var", BAD, ids=[var + str(i) for i, (_, var) in enumerate(BAD)])
def test_status_with_a_bad_value_says_not_healthy_in_one_line(
    tmp_path: Path, env: dict[bytes, bytes], var: str
) -> None:
    base = {
        b"PATH": os.environ.get("PATH", os.defpath).encode(),
        b"PYTHONPATH": REPO.encode(),
        b"LAUNCHER_RUN_DIR": str(tmp_path / "run").encode(),
    }
    proc = subprocess.run(
        launcher_argv("status"),
        env={**base, **env},
        capture_output=True,
        timeout=60,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
