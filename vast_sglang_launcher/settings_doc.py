"""`settings`: every knob with its variable, default and meaning (the README table)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import AliasChoices
from pydantic_core import PydanticUndefined

from .settings import Settings, env_name

BEGIN = (
    "<!-- settings-table:begin (generated: python -m vast_sglang_launcher settings --markdown) -->"
)
END = "<!-- settings-table:end -->"


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


def update_readme(path: Path) -> bool:
    """Replace the table between the markers; True when the file changed."""
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = f"{text[:start]}\n{markdown_table()}\n{text[end:]}"
    if new != text:
        path.write_text(new)
    return new != text


def command_settings(settings: Settings, args: argparse.Namespace) -> int:
    table = markdown_table()
    if args.update_readme:
        changed = update_readme(Path(args.update_readme))
        print(f"{args.update_readme}: {'updated' if changed else 'already current'}")
        return 0
    if args.markdown:
        print(f"{BEGIN}\n{table}\n{END}")
        return 0
    for name in Settings.model_fields:
        value = getattr(settings, name)
        print(f"{env_name(name)}={'' if value is None else value}")
    return 0
