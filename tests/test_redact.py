"""Secret SGLang options are masked wherever an argv is shown (issue 11)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vast_sglang_launcher.redact import (
    MASK,
    SECRET_OPTIONS,
    Redactor,
    argv_redactor,
    argv_secrets,
    mask_argv,
    mask_setting,
    redact_url,
    redactor_for,
    secret_option,
    settings_secrets,
    url_secrets,
)
from vast_sglang_launcher.settings import load_settings

PACKAGE_TABLES = Path(__file__).resolve().parent.parent / "vast_sglang_launcher/plan/data"
# every release table the package ships (the ones `plan` chooses from); none is a loud error,
# not a silently empty parametrization
TABLES = sorted(PACKAGE_TABLES.glob("server-args-*.json"))
if not TABLES:
    raise FileNotFoundError(f"no server-args-*.json in {PACKAGE_TABLES}: the checkout is broken")
SECRET_NAME = re.compile(r"key|password|passwd|secret|credential|token$", re.I)
NOT_SECRET = {
    "--ssl-keyfile",  # the path of the key file, not the key
    "--bucket-time-to-first-token",  # metrics buckets
    "--kt-max-deferred-experts-per-token",  # a count
}


@pytest.mark.parametrize("table", TABLES, ids=[t.name for t in TABLES])
def test_every_secret_looking_option_of_the_tables_is_masked(table: Path) -> None:
    options = [s for o in json.loads(table.read_text())["options"] for s in o["options"]]
    looking = {s for s in options if SECRET_NAME.search(s)}
    assert looking, "the pattern finds --api-key at least"
    assert looking <= set(SECRET_OPTIONS) | NOT_SECRET, looking - set(SECRET_OPTIONS)
    assert "--api-key" in options
    # every option that is a prefix of a secret one, and not itself secret, is known
    for option in options:
        if option not in SECRET_OPTIONS and any(s.startswith(option) for s in SECRET_OPTIONS):
            assert option in NOT_SECRET and not secret_option(option)


@pytest.mark.parametrize(
    "argv, shown",
    [
        (["--api-key", "sk-1"], ["--api-key", MASK]),
        (["--api-key=sk-1"], [f"--api-key={MASK}"]),
        (["--api-k", "sk-1"], ["--api-k", MASK]),  # argparse abbreviation
        (["--admin-api-key", "a"], ["--admin-api-key", MASK]),
        (["--ssl-keyfile-password=pw"], [f"--ssl-keyfile-password={MASK}"]),
        (["--ssl-keyfile", "/k.pem"], ["--ssl-keyfile", "/k.pem"]),
        (["--ssl-keyfile=/k.pem"], ["--ssl-keyfile=/k.pem"]),
        (["--tp", "2", "--api-key"], ["--tp", "2", "--api-key"]),
        (["--model-path", "--api-key"], ["--model-path", "--api-key"]),
    ],
)
def test_mask_argv(argv: list[str], shown: list[str]) -> None:
    full = ["sglang", "serve", *argv]
    assert mask_argv(full) == ["sglang", "serve", *shown]


def test_argv_secrets_and_the_redactor() -> None:
    argv = ["sglang", "serve", "--api-key", "sk-long-1", "--admin-api-key=adm-2222"]
    assert argv_secrets(argv) == ["sk-long-1", "adm-2222"]
    settings = load_settings({"HF_TOKEN": "hf_token_3333"})
    redact = argv_redactor(settings, argv)
    text = redact("key sk-long-1, admin adm-2222, hub hf_token_3333")
    assert text == f"key {MASK}, admin {MASK}, hub {MASK}"
    assert redact.data({"a": ["sk-long-1", 1, None], "b": {"c": "x adm-2222"}}) == {
        "a": [MASK, 1, None],
        "b": {"c": f"x {MASK}"},
    }


# --- the rules one by one (the mutation run, scripts/mutation.py, uses this file) ---------


@pytest.mark.parametrize(
    ("word", "secret"),
    [
        ("--api-key", True),
        ("--api-key=x", True),
        ("--a", True),  # a prefix of --api-key and --admin-api-key: SGLang refuses it anyway
        ("--ssl-keyfile-p", True),
        ("--ssl-keyfile", False),
        ("--ssl-keyfile=/k.pem", False),
        ("--", False),
        ("-api-key", False),
        ("api-key", False),
        ("--tp", False),
    ],
)
def test_secret_option(word: str, secret: bool) -> None:
    assert secret_option(word) is secret


def test_a_value_with_an_equals_sign_is_masked_whole() -> None:
    assert argv_secrets(["--api-key=a=b", "--api-key", "c=d"]) == ["a=b", "c=d"]
    assert mask_argv(["--api-key=a=b"]) == [f"--api-key={MASK}"]
    assert argv_secrets(["--api-key"]) == [] and mask_argv(["--api-key"]) == ["--api-key"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://me:pw@host/p?token=abc&plain", f"https://me:{MASK}@host/p?token={MASK}&plain"),
        ("https://tok@host/s.sh", f"https://{MASK}@host/s.sh"),
        ("https://me:p@ss@host/s.sh", f"https://me:{MASK}@host/s.sh"),
        ("https://host/s.sh#frag", "https://host/s.sh#frag"),
        ("http://[::1", MASK),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_secrets() -> None:
    assert url_secrets("https://me:pw@h/?a=1&b") == ["1", "", "me:pw", "pw"]
    assert url_secrets("https://tok@h/") == ["tok"]
    assert url_secrets("https://h/") == []
    # a password holding `@` or `:` is masked whole
    assert url_secrets("https://me:p@ss@h/") == ["me:p@ss", "p@ss"]
    assert url_secrets("https://me:p:w@h/") == ["me:p:w", "p:w"]
    assert url_secrets("http://[::1") == ["http://[::1"]


def test_every_secret_setting_is_collected() -> None:
    settings = load_settings(
        {
            "HF_TOKEN": "hf_1111",
            "OPEN_BUTTON_TOKEN": "open2222",
            "WEB_PASSWORD": "web3333",
            "LAUNCHER_GATEWAY_TOKEN": "gate4444",
            "PROVISIONING_SCRIPT": "https://me:prov5555@h/p.sh",
            "HOTFIX_SCRIPT": "https://h/fix.sh?sig=hot6666",
            "LAUNCHER_GATEWAY_WORKERS": "http://w7777@h1:1,http://h2:2?k=w8888",
            "SGLANG_ARGS": "--api-key sk-9999 --tp 2",
            "LAUNCHER_GATEWAY_ARGS": "--api-key=gw-0000",
        }
    )
    found = set(settings_secrets(settings))
    for secret in (
        "hf_1111", "open2222", "web3333", "gate4444", "prov5555", "me:prov5555", "hot6666",
        "w7777", "w8888", "sk-9999", "gw-0000",
    ):  # fmt: skip
        assert secret in found, secret
    assert settings_secrets(load_settings({})) == []
    workers = load_settings({"LAUNCHER_GATEWAY_WORKERS": "http://u1111@h1:1,http://u2222@h2:2"})
    assert settings_secrets(workers) == ["u1111", "u2222"]


def test_a_script_urls_user_and_password_never_reach_a_log_line() -> None:
    url = "https://me:pass1234@scripts.example/provision.sh"
    redact = redactor_for(load_settings({"PROVISIONING_SCRIPT": url}))
    line = redact(f"fetching {url} as me:pass1234")
    assert (
        "pass1234" not in line
        and line == f"fetching https://{MASK}@scripts.example/provision.sh as {MASK}"
    )
    assert redact.url(url) == f"https://me:{MASK}@scripts.example/provision.sh"
    extra = redactor_for(load_settings({}), "https://u:given999@h/x", "not a url given999")
    assert extra("x given999") == f"x {MASK}"
    assert (
        redactor_for(load_settings({}), "plain-word-1234")("plain-word-1234") == "plain-word-1234"
    )


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("hf_endpoint", "https://me:pw@hub.local", f"https://me:{MASK}@hub.local"),
        (
            "gateway_workers",
            "http://t@h1:1, plain,http://h2:2?k=v",
            f"http://{MASK}@h1:1, plain,http://h2:2?k={MASK}",
        ),
        (
            "sglang_args",
            "--api-key sk-1 --served-model-name 'a b'",
            f"--api-key {MASK} --served-model-name 'a b'",
        ),
        ("sglang_args", "--api-key=sk-1", f"--api-key={MASK}"),
        (
            "sglang_args",
            "--tp  2   --served-model-name 'a b'",
            "--tp  2   --served-model-name 'a b'",
        ),
        ("sglang_args", "--api-key 'sk-1", f"--api-key {MASK}"),  # unbalanced: split on blanks
        ("sglang_model", "https://me:pw@x --api-key y", "https://me:pw@x --api-key y"),
    ],
)
def test_mask_setting(name: str, value: str, shown: str) -> None:
    assert mask_setting(name, value) == shown


def test_the_redactor_masks_long_secrets_first_and_ignores_short_ones() -> None:
    redact = Redactor(["abcd", "abcdef", "abc", ""])
    assert redact("abcdef abcd abc") == f"{MASK} {MASK} abc"
    assert redact.data(("abcd", 1, {"k": ["abcdef"]})) == [MASK, 1, {"k": [MASK]}]
    assert redact.data(None) is None
    assert argv_redactor(None, ["--api-key", "sk-4321"])("sk-4321") == MASK
