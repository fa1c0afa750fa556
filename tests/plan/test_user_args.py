"""The user's extra options: SGLANG_ARGS, then the args file, word by word with where each
came from, and one clear error (ConfigError: exit 78) for a file that cannot be read. The
mutation run (scripts/mutation.py) uses these for plan/user_args.py."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.plan.user_args import read_user_args


def test_sglang_args_then_the_file_each_word_with_its_source(tmp_path: Path) -> None:
    args = tmp_path / "sglang-args.conf"
    args.write_text("# my options\n--context-length 8192\n--served-model-name 'a b'\n")
    user = read_user_args("--tp 2", args)
    assert user.tokens == ["--tp", "2", "--context-length", "8192", "--served-model-name", "a b"]
    assert user.sources == ["SGLANG_ARGS"] * 2 + [str(args)] * 4
    assert user.args_file == f"{args}: read, 4 words appended after SGLANG_ARGS"


def test_a_missing_file_adds_nothing(tmp_path: Path) -> None:
    user = read_user_args("--tp 2", tmp_path / "none.conf")
    assert (user.tokens, user.sources) == (["--tp", "2"], ["SGLANG_ARGS", "SGLANG_ARGS"])
    assert user.args_file == f"{tmp_path / 'none.conf'}: not found, nothing added (that is fine)"


def test_a_file_of_comments_only_has_no_options(tmp_path: Path) -> None:
    args = tmp_path / "a.conf"
    args.write_text("# nothing yet\n\n")
    user = read_user_args("", args)
    assert (user.tokens, user.sources) == ([], [])
    assert user.args_file == f"{args}: read, no options in it"


def test_a_non_utf8_file_is_one_clear_error(tmp_path: Path) -> None:
    args = tmp_path / "a.conf"
    args.write_bytes(b"--served-model-name caf\xe9\n")
    with pytest.raises(ConfigError) as raised:
        read_user_args("", args)
    message = str(raised.value)
    assert message.startswith(f"SGLANG_ARGS_FILE={args} is not UTF-8 text (")
    assert "at byte 23" in message and "save it as UTF-8" in message


def test_a_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SGLANG_ARGS_FILE=.* is a directory, not a file"):
        read_user_args("", tmp_path)


def test_a_path_under_a_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as raised:
        read_user_args("", tmp_path / "file" / "a.conf")
    assert str(raised.value) == (
        f"SGLANG_ARGS_FILE={tmp_path / 'file' / 'a.conf'} cannot be read (Not a directory); fix "
        "it or point SGLANG_ARGS_FILE elsewhere"
    )


@contextlib.contextmanager
def _not_root() -> Iterator[None]:
    """As root, read as nobody (the effective uid only: the saved root uid comes back)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_an_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    args = tmp_path / "a.conf"
    args.write_text("--tp 2\n")
    args.chmod(0)
    with _not_root(), pytest.raises(ConfigError) as raised:
        read_user_args("", args)
    assert str(raised.value) == (
        f"SGLANG_ARGS_FILE={args} cannot be read (Permission denied); fix its permissions or "
        "point SGLANG_ARGS_FILE elsewhere"
    )


def test_a_file_in_a_directory_that_cannot_be_searched_is_one_clear_error(
    tmp_path: Path,
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir()
    (closed / "a.conf").write_text("--tp 2\n")
    closed.chmod(0)
    with _not_root(), pytest.raises(ConfigError, match=r"cannot be read \(Permission denied\)"):
        read_user_args("", closed / "a.conf")


def test_unbalanced_quotes_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SGLANG_ARGS: cannot split"):
        read_user_args("--served-model-name 'a", tmp_path / "none.conf")
    args = tmp_path / "a.conf"
    args.write_text('--served-model-name "a\n')
    with pytest.raises(ConfigError, match=f"{args}: cannot split"):
        read_user_args("", args)
