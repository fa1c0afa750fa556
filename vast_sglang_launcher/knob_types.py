"""The strict value types every settings part declares its knobs with (the shared floor of
the settings: `settings` and each capability's `knobs` import it, it imports no capability).

Every value is parsed strictly: ASCII digits only, finite and bounded numbers, one boolean
vocabulary, paths the kernel accepts, and one-line values where a newline could forge a log
line. A bad value is one line naming the variable (`settings.load_settings`), never a
traceback. Pure: nothing here reads the environment or the filesystem.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from .values import check_header_token, check_model, check_secret, check_url, check_urls

BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
BOOL_VOCABULARY = "true, false, 1, 0, yes, no (any case)"
MAX_SECONDS = 30 * 24 * 3600.0
"""Largest value of a seconds setting (30 days): finite, and safe for every timer."""
PATH_MAX = 4095
NAME_MAX = 255
MAX_LINE = 8192
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_INT = re.compile(r"-?[0-9]{1,18}")
_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?|\.[0-9]{1,9}")
_PORT = re.compile(r"[0-9]{1,5}")


def _strict_bool(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in BOOL_WORDS:
            raise ValueError(f"expected one of {BOOL_VOCABULARY}")
        return BOOL_WORDS[word]
    return value


def _strict_int(value: Any) -> Any:
    if isinstance(value, str):
        if not _INT.fullmatch(value.strip()):
            raise ValueError("expected a whole number written with the ASCII digits 0-9")
        return int(value.strip())
    return value


def _strict_seconds(value: Any) -> Any:
    if isinstance(value, str):
        if not _SECONDS.fullmatch(value.strip()):
            raise ValueError(
                "expected a number of seconds written with the ASCII digits 0-9 and an "
                "optional decimal point (e.g. 30 or 2.5)"
            )
        return float(value.strip())
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number of seconds")
    return value


def _no_control(value: str) -> None:
    if _CONTROL.search(value):
        raise ValueError("it contains a newline or another control character")


def _one_line(value: str) -> str:
    _no_control(value)
    if len(value) > MAX_LINE:
        raise ValueError(f"it is longer than {MAX_LINE} characters")
    return value


def _check_path(value: Any) -> Any:
    text = str(value) if isinstance(value, (str, Path)) else None
    if text is None:
        return value
    _no_control(text)
    raw = os.fsencode(text)
    if len(raw) > PATH_MAX:
        raise ValueError(f"a path may have at most {PATH_MAX} bytes")
    if any(len(part) > NAME_MAX for part in raw.split(b"/")):
        raise ValueError(f"each name in a path may have at most {NAME_MAX} bytes")
    return value


def _url_or_path(value: str) -> str:
    _one_line(value)
    if value.strip().lower().startswith(("http://", "https://")):
        check_url(value.strip())
    elif "://" not in value:
        _check_path(value.strip())
    return value


def _path_like(value: str) -> str:
    _check_path(value)
    return value


def parse_ports(text: str) -> frozenset[int]:
    """Port numbers separated by commas or spaces (ASCII digits, 1-65535); ValueError names
    the first item that is not one."""
    ports = set()
    for item in re.split(r"[ \t\n,]+", text.strip()):
        if not item:
            continue
        if not _PORT.fullmatch(item) or not 1 <= int(item) <= 65535:
            shown = item if len(item) <= 20 else item[:20] + "..."
            raise ValueError(
                f"{shown!r} is not a port number (1-65535 in ASCII digits); list external "
                "ports separated by commas or spaces"
            )
        ports.add(int(item))
    return frozenset(ports)


Bool = Annotated[bool, BeforeValidator(_strict_bool)]
Int = Annotated[int, BeforeValidator(_strict_int)]
Seconds = Annotated[
    float, BeforeValidator(_strict_seconds), Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)
]
Line = Annotated[str, AfterValidator(_one_line)]
SafePath = Annotated[Path, BeforeValidator(_check_path)]
Source = Annotated[str, AfterValidator(_url_or_path)]
PathLike = Annotated[str, AfterValidator(_path_like)]
ModelName = Annotated[
    str, AfterValidator(_one_line), AfterValidator(_path_like), AfterValidator(check_model)
]
Url = Annotated[str, AfterValidator(_one_line), AfterValidator(check_url)]
Urls = Annotated[str, AfterValidator(_one_line), AfterValidator(check_urls)]
HeaderToken = Annotated[
    SecretStr, BeforeValidator(lambda v: check_header_token(v) if isinstance(v, str) else v)
]
Secret = Annotated[
    SecretStr, BeforeValidator(lambda v: check_secret(v) if isinstance(v, str) else v)
]
