"""Checks of the values users type that a library would otherwise refuse with an exception
(and a traceback, or a secret in its message): hub repo ids, http(s) URLs and tokens sent in
HTTP headers. Pure and standard library only; each check raises ValueError with the reason
and what a valid value looks like, which `settings` turns into one line naming the variable.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

REPO_ID_HINT = (
    "a hub repo id looks like Org/Name (letters, digits, '-', '_', '.'; no '--' or '..'), "
    "a local model directory like /models/name"
)
URL_HINT = "a valid value looks like http://host:port or https://host (port 1-65535)"

# huggingface_hub 2.4.0 utils/_validators.py, validate_repo_id and REPO_ID_REGEX: at most one
# '/', each part [A-Za-z0-9_.-] not starting or ending with '-' or '.', 96 characters at most,
# no '--' or '..', not ending in '.git' (tests/test_values.py compares with the real function).
_REPO_ID = re.compile(r"(\b[\w\-.]{1,96}\b/)?\b[\w\-.]{1,96}\b", flags=re.ASCII)
_HUB_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")


def looks_local(model: str) -> bool:
    """A path the user means as a directory (absolute, relative with ./ or ../, or ~)."""
    return model.startswith(("/", ".", "~"))


def repo_id_problem(model: str) -> str | None:
    """Why `model` is not a valid hub repo id (None when it is one)."""
    if model.count("/") > 1:
        return "a repo id has at most one '/' (Org/Name)"
    if not _REPO_ID.fullmatch(model):
        return "a repo id has only letters, digits, '-', '_' and '.' (not first or last)"
    if "--" in model or ".." in model:
        return "a repo id cannot hold '--' or '..'"
    if model.endswith(".git"):
        return "a repo id cannot end in '.git'"
    return None


def repo_id_from_url(value: str) -> str | None:
    """`Org/Name` of a pasted hub page URL (https://huggingface.co/Org/Name[/tree/...]);
    None when `value` is not a URL of the hub."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in _HUB_HOSTS:
        return None
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["models"]:
        segments = segments[1:]
    if not segments:
        return None
    return "/".join(segments[:2])


def check_model(value: str) -> str:
    """The model as SGLang and huggingface_hub will get it: a local path (kept as written), a
    valid repo id, or the repo id of a pasted hub URL. ValueError otherwise."""
    if value != value.strip():
        raise ValueError(f"it starts or ends with a space or a tab; {REPO_ID_HINT}")
    if looks_local(value):
        return value
    from_url = repo_id_from_url(value)
    if from_url is not None:
        if repo_id_problem(from_url) is None:
            return from_url
        raise ValueError(f"this hub URL names no repo ({from_url!r}); {REPO_ID_HINT}")
    if "://" in value:
        raise ValueError(f"it is a URL but not one of the hub; {REPO_ID_HINT}")
    problem = repo_id_problem(value)
    if problem is not None:
        from pathlib import Path

        if Path(value).exists():  # a relative directory that happens to exist
            return value
        raise ValueError(f"{problem}; {REPO_ID_HINT}")
    return value


def check_url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """`value` when it is an absolute URL with one of `schemes`, a host and a valid port;
    ValueError naming what is wrong otherwise (urllib would raise later, or much later)."""
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"it is not a URL ({exc}); {URL_HINT}") from None
    if parts.scheme not in schemes:
        starts = " or ".join(s + "://" for s in schemes)
        raise ValueError(f"it must start with {starts}; {URL_HINT}")
    if not parts.hostname:
        raise ValueError(f"it names no host; {URL_HINT}")
    if port == 0:
        raise ValueError(f"port 0 is not a port; {URL_HINT}")
    if any(c.isspace() for c in value):
        raise ValueError(f"it contains a space; {URL_HINT}")
    return value


def check_urls(value: str) -> str:
    """A list of URLs separated by spaces or commas, each one that urllib can parse (a `[`
    or a port out of range would raise later, in a crash loop); what each must hold (the
    scheme, a host) is checked where the list is used (`gateway`)."""
    for item in re.split(r"[\s,]+", value.strip()):
        try:
            urlsplit(item).port  # noqa: B018 - raises ValueError
        except ValueError as exc:
            shown = item if len(item) <= 40 else item[:40] + "..."
            raise ValueError(f"{shown!r} is not a URL ({exc}); {URL_HINT}") from None
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_secret(value: str) -> str:
    """A token or password: no space, tab or line break at either end (a paste mistake) and
    no control character anywhere. Refused, never stripped: an HTTP client refuses such a
    header with the whole value in its error message. The value is never in the message."""
    if value != value.strip():
        raise ValueError(
            "it starts or ends with a space, a tab or a line break (a paste mistake?); set it "
            "again without them"
        )
    if _CONTROL.search(value):
        raise ValueError("it holds a line break or another control character")
    return value


def check_header_token(value: str) -> str:
    """`check_secret`, and ASCII only: a token the launcher sends in an HTTP header itself
    (HF_TOKEN, LAUNCHER_GATEWAY_TOKEN); httpx encodes header values as ASCII and raises
    UnicodeEncodeError otherwise."""
    check_secret(value)
    if not value.isascii():
        raise ValueError(
            "it holds a character that is not ASCII, which an HTTP header cannot carry; a "
            "token is ASCII"
        )
    return value
