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


def read_user_args(sglang_args: str, args_file: Path) -> UserArgs:
    """SGLANG_ARGS followed by the args file (a missing file is no error)."""
    tokens = split_words(sglang_args, "SGLANG_ARGS")
    sources = ["SGLANG_ARGS"] * len(tokens)
    try:
        text = args_file.read_text()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"SGLANG_ARGS_FILE={args_file} cannot be read ({exc}); fix its permissions or "
            "point SGLANG_ARGS_FILE elsewhere"
        ) from None
    file_tokens = split_words(text, str(args_file))
    return UserArgs(tokens + file_tokens, sources + [str(args_file)] * len(file_tokens))
