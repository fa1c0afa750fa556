"""Which SGLang option table the user's words are read with, and why.

In order: ``LAUNCHER_OPTION_TABLE`` when it is set; the table written at image build (that
setting's default path); the shipped snapshot of the installed sglang's version (from its
metadata, see ``installed``); the nearest older snapshot, with a warning naming both
versions. With no sglang found at all, the newest snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .installed import Installed
from .options import OptionTable, read_table, snapshot, snapshot_versions
from .versions import version_key


@dataclass(frozen=True)
class TableChoice:
    table: OptionTable
    why: str
    warnings: tuple[str, ...] = ()


def choose_table(option_table: Path, explicit: bool, installed: Installed | None) -> TableChoice:
    """The table to read with. ``explicit``: LAUNCHER_OPTION_TABLE was set by the user."""
    if explicit:
        if not option_table.is_file():
            raise ConfigError(
                f"LAUNCHER_OPTION_TABLE={option_table} is not a file; point it at a table "
                "written by `vast-sglang-launcher option-table --output`, or unset it"
            )
        return TableChoice(read_table(option_table), "LAUNCHER_OPTION_TABLE is set")
    if option_table.is_file():
        table = read_table(option_table)
        warnings: tuple[str, ...] = ()
        if installed is not None and installed.version != table.version:
            warnings = (
                f"the option table written at image build ({option_table}) is for SGLang "
                f"{table.version}, but SGLang {installed.version} is installed "
                f"({installed.where}): rewrite it with `option-table --output {option_table}`",
            )
        return TableChoice(table, "written at image build from the installed sglang", warnings)
    return _snapshot_for(option_table, installed)


def _snapshot_for(option_table: Path, installed: Installed | None) -> TableChoice:
    keyed = sorted((key, v) for v in snapshot_versions() if (key := version_key(v)) is not None)
    absent = f"no table written at image build ({option_table})"
    if installed is None:
        newest = keyed[-1][1]
        return TableChoice(
            snapshot(newest),
            f"{absent} and no installed sglang found: the newest snapshot, SGLang {newest}",
        )
    want = version_key(installed.version)
    exact = [v for _, v in keyed if v == installed.version]
    if exact:
        return TableChoice(
            snapshot(exact[0]),
            f"{absent}; the snapshot of the installed SGLang {installed.version} "
            f"({installed.where})",
        )
    older = [v for key, v in keyed if want is not None and key < want]
    chosen = older[-1] if older else keyed[0][1]
    relation = "the nearest older snapshot" if older else "no older snapshot: the oldest"
    return TableChoice(
        snapshot(chosen),
        f"{absent}; SGLang {installed.version} is installed ({installed.where}), "
        f"{relation} is SGLang {chosen}",
        (
            f"no option table ships for the installed SGLang {installed.version}: reading "
            f"options with SGLang {chosen}'s table; options added in between are reported "
            "as unknown (add the table with scripts/snapshot-option-table.sh, or write it "
            "at image build)",
        ),
    )
