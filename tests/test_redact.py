"""Secret SGLang options are masked wherever an argv is shown (issue 11)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vast_sglang_launcher.redact import (
    MASK,
    SECRET_OPTIONS,
    argv_redactor,
    argv_secrets,
    mask_argv,
    secret_option,
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
