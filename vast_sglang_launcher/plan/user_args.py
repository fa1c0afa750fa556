"""The user's extra SGLang options: SGLANG_ARGS, then the args file, split like a shell would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..words import split_words


@dataclass(frozen=True)
class UserArgs:
    tokens: list[str]
    sources: list[str]
    """Where each token came from: "SGLANG_ARGS" or the args file's path."""
    args_file: str = ""
    """What became of the args file: read (how many words), empty, or not found."""


def read_user_args(sglang_args: str, args_file: Path) -> UserArgs:
    """SGLANG_ARGS followed by the args file (a missing file is no error)."""
    tokens = split_words(sglang_args, "SGLANG_ARGS")
    sources = ["SGLANG_ARGS"] * len(tokens)
    try:  # read_text only: an is_dir() first raises where a parent is not searchable
        text = args_file.read_text()
    except FileNotFoundError:
        return UserArgs(tokens, sources, f"{args_file}: not found, nothing added (that is fine)")
    except IsADirectoryError:
        raise ConfigError(
            f"SGLANG_ARGS_FILE={args_file} is a directory, not a file of options; point "
            "SGLANG_ARGS_FILE at a file (or at a path that does not exist, for none)"
        ) from None
    except PermissionError as exc:
        raise ConfigError(
            f"SGLANG_ARGS_FILE={args_file} cannot be read ({exc.strerror}); fix its "
            "permissions or point SGLANG_ARGS_FILE elsewhere"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"SGLANG_ARGS_FILE={args_file} is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}); save it as UTF-8 or point SGLANG_ARGS_FILE elsewhere"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"SGLANG_ARGS_FILE={args_file} cannot be read ({exc.strerror or exc}); fix it "
            "or point SGLANG_ARGS_FILE elsewhere"
        ) from None
    file_tokens = split_words(text, str(args_file))
    state = (
        f"{args_file}: read, {len(file_tokens)} words appended after SGLANG_ARGS"
        if file_tokens
        else f"{args_file}: read, no options in it"
    )
    return UserArgs(tokens + file_tokens, sources + [str(args_file)] * len(file_tokens), state)
