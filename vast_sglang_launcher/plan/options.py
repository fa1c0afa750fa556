"""SGLang's option table, and reading a command line the way SGLang's argparse reads it.

SGLang parses its options with plain argparse and ``allow_abbrev=True``: ``--tp 2`` is an
abbreviation of ``--tp-size``, ``--opt=value`` works, and the last occurrence of a dest wins
whatever spelling it used. Detecting a user's choice therefore means resolving every token to
its dest exactly as argparse would; a regex on option names gets it wrong.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from .known_options import Known

Kind = Literal["flag", "value", "list", "optional"]
_PREFIX = "server-args-"
_DATA = resources.files(__package__ or "vast_sglang_launcher.plan").joinpath("data")
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


@dataclass(frozen=True)
class Option:
    strings: tuple[str, ...]
    dest: str
    kind: Kind


@dataclass(frozen=True)
class OptionTable:
    """Every option string of one SGLang release, mapped to its option."""

    version: str
    source: str
    by_string: dict[str, Option]

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> OptionTable:
        by_string: dict[str, Option] = {}
        for entry in data["options"]:
            opt = Option(tuple(entry["options"]), str(entry["dest"]), entry["kind"])
            for s in opt.strings:
                by_string[s] = opt
        return cls(str(data.get("sglang_version", "unknown")), source, by_string)

    def resolve(self, known: Known) -> Resolved:
        """Which option of this table ``known`` is, whatever dest the release gives it."""
        found = [(s, self.by_string[s]) for s in known.spellings if s in self.by_string]
        where = f"the option table of SGLang {self.version} ({self.source})"
        if not found:
            names = " / ".join(known.spellings)
            return Resolved(known, None, None, f"{names} is not in {where}")
        options = {opt for _, opt in found}
        if len(options) > 1:
            split = ", ".join(f"{s} -> {opt.dest}" for s, opt in found)
            return Resolved(
                known,
                None,
                None,
                f"{known} is ambiguous in {where}: its spellings name different options ({split})",
            )
        return Resolved(known, found[0][1], found[0][0], None)


def read_table(path: Path, variable: str = "LAUNCHER_OPTION_TABLE") -> OptionTable:
    """An option table file (written by `option-table --output`, or a snapshot)."""
    try:
        return OptionTable.from_json(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{variable}={path} is unreadable ({exc}); regenerate it with "
            "`python -m vast_sglang_launcher option-table --output` or remove it"
        ) from None


def snapshot_versions() -> list[str]:
    """The SGLang releases whose option table ships in the package (file names only)."""
    return [
        entry.name[len(_PREFIX) : -len(".json")]
        for entry in _DATA.iterdir()
        if entry.name.startswith(_PREFIX) and entry.name.endswith(".json")
    ]


def snapshot(version: str) -> OptionTable:
    """The shipped table of one SGLang release."""
    name = f"{_PREFIX}{version}.json"
    return OptionTable.from_json(json.loads(_DATA.joinpath(name).read_text()), f"snapshot {name}")


@dataclass(frozen=True)
class Resolved:
    """A launcher option in one table: the option, the spelling to write, or the problem."""

    known: Known
    option: Option | None
    flag: str | None
    problem: str | None


@dataclass(frozen=True)
class Occurrence:
    """One option as argparse would see it: where it stands, its dest and its value(s)."""

    index: int
    written: str
    dest: str
    values: tuple[str, ...]
    source: str

    @property
    def value(self) -> str | None:
        return self.values[-1] if self.values else None


@dataclass
class Scan:
    """What a command line sets, dest by dest, and what argparse would reject."""

    occurrences: list[Occurrence] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def last(self, dest: str) -> Occurrence | None:
        """The occurrence that wins: argparse keeps the last one of a dest."""
        for occ in reversed(self.occurrences):
            if occ.dest == dest:
                return occ
        return None


def _match(table: OptionTable, token: str) -> tuple[Option | None, str | None, list[str]]:
    """Resolve one option-looking token: (option, explicit value, ambiguous candidates)."""
    if token in table.by_string:
        return table.by_string[token], None, []
    name, eq, explicit = token.partition("=")
    value = explicit if eq else None
    if eq and name in table.by_string:
        return table.by_string[name], value, []
    if token.startswith("--"):
        candidates = sorted(s for s in table.by_string if s.startswith(name))
        if len(candidates) == 1:
            return table.by_string[candidates[0]], value, []
        if len(candidates) > 1:
            return None, value, candidates
    return None, value, []


def _looks_like_option(table: OptionTable, token: str) -> bool:
    """argparse's classification of a token as an option ('O') rather than a value ('A')."""
    if not token or token[0] != "-" or token == "-":
        return False
    if token in table.by_string:
        return True
    if _NEGATIVE_NUMBER.match(token):
        return False
    return " " not in token


def scan(table: OptionTable, tokens: list[str], sources: list[str] | None = None) -> Scan:
    """Read ``tokens`` like SGLang's parser; ``sources`` names where each token came from."""
    src = sources or ["args"] * len(tokens)
    result = Scan()
    i = 0
    after_unknown = False  # the values of an option SGLang rejects are not reported twice
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            if i + 1 < len(tokens):
                result.problems.append(
                    f"{src[i]}: arguments after '--' are not options; SGLang rejects "
                    f"{' '.join(tokens[i + 1 :])!r}"
                )
            break
        if not _looks_like_option(table, token):
            if after_unknown:
                i += 1
                continue
            result.problems.append(
                f"{src[i]}: {token!r} is not an option and SGLang takes no positional "
                "arguments (unrecognized argument)"
            )
            i += 1
            continue
        opt, explicit, candidates = _match(table, token)
        after_unknown = opt is None
        if opt is None:
            if candidates:
                shown = ", ".join(candidates[:8]) + (" ..." if len(candidates) > 8 else "")
                result.problems.append(
                    f"{src[i]}: {token.split('=')[0]!r} is ambiguous (could be {shown}); "
                    "SGLang will refuse it: spell the option out"
                )
            else:
                name = token.split("=")[0]
                close = difflib.get_close_matches(name, table.by_string, n=3, cutoff=0.85)
                guess = f" (did you mean {' or '.join(close)}?)" if close else ""
                result.problems.append(
                    f"{src[i]}: unknown option {name!r} for SGLang {table.version}{guess}; "
                    "SGLang will refuse it"
                )
            i += 1
            continue
        start = i
        values, i = _consume(table, opt, token, explicit, tokens, i, src, result)
        if values is not None:
            result.occurrences.append(Occurrence(start, token, opt.dest, values, src[start]))
    return result


def _consume(
    table: OptionTable,
    opt: Option,
    token: str,
    explicit: str | None,
    tokens: list[str],
    i: int,
    src: list[str],
    result: Scan,
) -> tuple[tuple[str, ...] | None, int]:
    """Take the option's values the way argparse's nargs would; return them and the next index."""
    start = i
    i += 1
    if opt.kind == "flag":
        if explicit is not None:
            result.problems.append(f"{src[start]}: {token!r}: the flag takes no value")
            return None, i
        return (), i
    if explicit is not None:
        return (explicit,), i
    following: list[str] = []
    while i < len(tokens) and tokens[i] != "--" and not _looks_like_option(table, tokens[i]):
        following.append(tokens[i])
        if opt.kind in ("value", "optional"):
            i += 1
            break
        i += 1
    if opt.kind == "value" and not following:
        result.problems.append(f"{src[start]}: {token!r} expects a value and has none")
        return None, i
    return tuple(following), i


@dataclass
class UserOptions:
    """The user's words as SGLang reads them under one table, looked up by launcher option.

    An option the table lacks, or names ambiguously, reads as unset and must not be added;
    the reason is kept once in ``problems`` for the plan's warnings.
    """

    table: OptionTable
    scan: Scan
    problems: list[str] = field(default_factory=list)
    _seen: dict[Known, Resolved] = field(default_factory=dict)

    def resolve(self, known: Known) -> Resolved:
        found = self._seen.get(known)
        if found is None:
            found = self._seen[known] = self.table.resolve(known)
            if found.problem is not None:
                self.problems.append(f"{found.problem}: the launcher can neither read nor set it")
        return found

    def last(self, known: Known) -> Occurrence | None:
        """The user's winning occurrence of ``known`` (argparse keeps the last one)."""
        option = self.resolve(known).option
        return None if option is None else self.scan.last(option.dest)

    def has(self, known: Known) -> bool:
        return self.last(known) is not None

    def last_if_known(self, known: Known) -> Occurrence | None:
        """``last`` for an option only some releases have (``--attn-dp-size``, 0.5.22+): a
        table without it means the user cannot have set it, which is no problem to report."""
        option = self.table.resolve(known).option
        return None if option is None else self.scan.last(option.dest)


def read_user_options(
    table: OptionTable, tokens: list[str], sources: list[str] | None = None
) -> UserOptions:
    return UserOptions(table, scan(table, tokens, sources))
