"""`settings`: every knob's current value, and the reference page (docs/settings.md) listing
each variable, its default and its meaning, generated from the settings class."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices
from pydantic_core import PydanticUndefined

from .errors import EX_CONFIG, LauncherError
from .redact import mask_setting
from .settings import Settings, env_name, inspect_settings, secret_names, shown_value

BEGIN = "<!-- settings-table:begin (generated: vast-sglang-launcher settings --markdown) -->"
END = "<!-- settings-table:end -->"
MARK = "<!-- settings-table:begin"  # what every version of the page holds

PAGE_INTRO = """\
# Settings

Every setting of vast-sglang-launcher is an environment variable. This page is generated from
the settings class (`vast-sglang-launcher settings --markdown`; after changing a setting, run
`vast-sglang-launcher settings --update docs/settings.md`), and a test keeps the two equal.

- A bad value stops the launcher with one line naming the variable, and exit status 78.
- An empty variable counts as unset, except `CUDA_VISIBLE_DEVICES` and
  `NVIDIA_VISIBLE_DEVICES` (empty hides every GPU).
- Where two names are given, the first wins when both are set.
- Booleans accept `true`/`false`, `1`/`0`, `yes`/`no` in any case.
- `vast-sglang-launcher settings` prints the value each setting has now, every secret masked;
  a bad value is shown as given, marked `# not valid: ...` with the reason, and the command
  exits 78 after printing them all.
"""


def _names(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str)]
        return " / ".join(f"`{n}`" for n in names)
    return f"`{env_name(field)}`"


def _default(field: str) -> str:
    value = Settings.model_fields[field].default
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Path):
        return f"`{value}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def markdown_table() -> str:
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        rows.append(f"| {_names(name)} | {_default(name)} | {doc} |")
    return "\n".join(rows)


def markdown_page() -> str:
    """The reference page, docs/settings.md: an introduction, then the table."""
    return f"{PAGE_INTRO}\n{BEGIN}\n{markdown_table()}\n{END}\n"


def update_reference(path: Path) -> bool:
    """Rewrite ``path`` with the reference page; True when it changed.

    Only a new file or an earlier reference (one holding the table's markers) is rewritten,
    so pointing this at another file (a README without the table) changes nothing.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = None
    if text is not None and MARK not in text:
        raise LauncherError(
            f"{path} holds no settings table, so it was left alone; the settings reference "
            "is docs/settings.md: run `vast-sglang-launcher settings --update docs/settings.md`"
        )
    new = markdown_page()
    if new != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new)
    return new != text


def current_value(value: object) -> str:
    """A value as the environment would spell it: booleans true/false, unset empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def print_settings(environ: Mapping[str, str]) -> int:
    """`settings`: every setting as VARIABLE=value, masked as every output is
    (`redact.mask_setting`); a bad value is shown as given (masked too), marked with the
    reason, and the command exits 78 after printing them all."""
    settings, bad = inspect_settings(environ)
    secret = secret_names()
    for name in Settings.model_fields:
        var = env_name(name)
        given = next((v for v in _names_of(name) if v in bad), None)
        if given is not None:
            raw = environ.get(given, "")
            shown = "***" if given in secret else shown_value(mask_setting(name, raw))
            print(f"{given}={shown}  # not valid: {bad[given]}")
            continue
        print(f"{var}={mask_setting(name, current_value(getattr(settings, name)))}")
    if not bad:
        return 0
    names = ", ".join(sorted(bad))
    print(f"vast-sglang-launcher: not valid: {names}; fix or unset them", file=sys.stderr)
    return EX_CONFIG


def _names_of(field: str) -> list[str]:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return [env_name(field)]


def command_settings(settings: Settings, args: argparse.Namespace) -> int:
    if args.update:
        changed = update_reference(Path(args.update))
        print(f"{args.update}: {'updated' if changed else 'already current'}")
        return 0
    if args.markdown:
        sys.stdout.write(markdown_page())
        return 0
    for name in Settings.model_fields:
        print(f"{env_name(name)}={mask_setting(name, current_value(getattr(settings, name)))}")
    return 0
