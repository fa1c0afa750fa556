"""`option-table --check FILE...`: does a table still hold every option the launcher uses?

SGLang renames dests and adds options between releases. The launcher names its options by
their strings (``known_options``), so a table passes when each of them resolves to exactly one
option; a missing one, or spellings split over two options, fails and is named.
Standard library only, like the rest of the option-table code.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .known_options import USED
from .options import read_table


def check_table(path: Path) -> list[str]:
    """The problems of one table file; empty when the launcher can use it."""
    try:
        table = read_table(path, "option table")
    except ConfigError as exc:
        return [str(exc)]
    return [r.problem for known in USED if (r := table.resolve(known)).problem is not None]


def check_tables(paths: list[Path]) -> tuple[bool, list[str]]:
    """(every table passes, one line per table and per problem)."""
    lines: list[str] = []
    ok = True
    for path in paths:
        problems = check_table(path)
        if problems:
            ok = False
            lines += [f"{path}: FAIL: {p}" for p in problems]
        else:
            lines.append(f"{path}: ok ({len(USED)} launcher options resolve to one option each)")
    return ok, lines
