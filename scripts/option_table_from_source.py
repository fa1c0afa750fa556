#!/usr/bin/env python3
"""SGLang's option table read from the source of a release, without importing it.

    python3 scripts/option_table_from_source.py SGLANG_DIR VERSION --output FILE
    python3 scripts/option_table_from_source.py SGLANG_DIR VERSION --compare TABLE

SGLANG_DIR is the ``sglang`` package directory of an unzipped wheel
(``pip download --no-deps sglang==X``, unzip). Importing ``sglang.srt.server_args`` needs torch
and much of SGLang's stack, so for the releases that cannot be installed here the table is
read statically, in the same shape ``vast-sglang-launcher option-table --output`` writes
(options, dest, kind, default, choices). Two ways SGLang registers its options are read:

- ``parser.add_argument(...)`` calls in ``srt/server_args.py`` (every release);
- from 0.5.14, ``A[T, "help"]`` / ``A[T, Arg(...)]`` fields turned into options by
  ``srt/arg_groups/arg_utils.py`` ``add_cli_args_from_dataclass``: the ``ServerArgs`` class body
  in 0.5.14-0.5.18, the namespace classes of ``srt/arg_groups/fields/*.py`` listed in
  ``server_args.py``'s ``_INPUT_NAMESPACES`` from 0.5.20. The kind follows that function's
  branches in order: ``Arg(action=...)``, ``Literal[...]`` (a value), a list without
  ``type_parser`` (``nargs`` or "+"), ``bool`` (store_true), else a value with ``Arg(nargs=...)``.

A custom action's kind comes from its class (``argparse_actions.py`` or ``server_args.py``):
the ``nargs`` default of its ``__init__`` (``DeprecatedAction`` has ``nargs=0``: a flag) unless
the call passes ``nargs``. ``argparse.BooleanOptionalAction`` adds the ``--no-`` spellings, as
argparse does. ``default`` and ``choices`` are kept where they are literals, else null (the
launcher reads only options, dest and kind). Anything the reader cannot resolve stops it with
the place named, never a guess. ``--compare`` prints where a table made by importing differs
in options, dest or kind, and exits 1 when it does.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FLAG_ACTIONS = {
    "store_true",
    "store_false",
    "store_const",
    "append_const",
    "count",
    "help",
    "version",
}


class SourceError(Exception):
    """Something in the source that the static reading cannot resolve."""


@dataclass
class Entry:
    options: list[str]
    dest: str
    kind: str
    default: Any = None
    choices: Any = None

    def as_json(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "dest": self.dest,
            "kind": self.kind,
            "default": self.default,
            "choices": self.choices,
        }


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    if (  # field(default_factory=list) / dict: the empty value
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "field"
        and [k.arg for k in node.keywords] == ["default_factory"]
        and isinstance(node.keywords[0].value, ast.Name)
        and node.keywords[0].value.id in ("list", "dict")
    ):
        return [] if node.keywords[0].value.id == "list" else {}
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _name(node: ast.AST) -> str:
    """``argparse.BooleanOptionalAction`` -> ``BooleanOptionalAction``; a Name as it is."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    raise SourceError(f"line {getattr(node, 'lineno', '?')}: {ast.unparse(node)} is not a name")


def _kind_of_nargs(nargs: Any) -> str:
    if nargs == 0:
        return "flag"
    if nargs in ("*", "+") or (isinstance(nargs, int) and nargs > 1):
        return "list"
    if nargs == "?":
        return "optional"
    return "value"


@dataclass
class Source:
    """The parsed files of one release and the action classes they define."""

    root: Path
    modules: dict[str, ast.Module] = field(default_factory=dict)
    action_nargs: dict[str, Any] = field(default_factory=dict)
    field_defaults: dict[str, ast.AST] = field(default_factory=dict)

    @classmethod
    def read(cls, sglang_dir: Path) -> Source:
        srt = sglang_dir / "srt"
        src = cls(sglang_dir)
        paths = [srt / "server_args.py", srt / "arg_groups" / "argparse_actions.py"]
        paths += sorted((srt / "arg_groups" / "fields").glob("*.py"))
        for path in paths:
            if path.is_file():
                rel = str(path.relative_to(sglang_dir))
                src.modules[rel] = ast.parse(path.read_text(), filename=rel)
        if "srt/server_args.py" not in src.modules:
            raise SourceError(f"{srt / 'server_args.py'} is missing")
        for tree in src.modules.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                    _name(b) == "Action"
                    for b in node.bases
                    if isinstance(b, ast.Attribute | ast.Name)
                ):
                    src.action_nargs[node.name] = _init_nargs(node)
        for rel, tree in src.modules.items():
            names = ["ServerArgs"] if rel == "srt/server_args.py" else []
            names += [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
            for name in names:
                for key, value in _class_defaults(tree, name).items():
                    src.field_defaults.setdefault(key, value)
        return src

    def action_kind(self, action: ast.AST, nargs: ast.AST | None, where: str) -> tuple[str, bool]:
        """(kind, adds --no- spellings) of an ``action=`` value."""
        if isinstance(action, ast.Constant) and isinstance(action.value, str):
            name = action.value
            if name in _FLAG_ACTIONS:
                return "flag", False
            if name in ("store", "append", "extend"):
                return (_kind_of_nargs(_literal(nargs)) if nargs is not None else "value"), False
            raise SourceError(f"{where}: unknown action {name!r}")
        name = _name(action)
        if name == "BooleanOptionalAction":
            return "flag", True
        if name not in self.action_nargs:
            raise SourceError(f"{where}: action class {name} is not defined in the files read")
        if nargs is not None:
            return _kind_of_nargs(_literal(nargs)), False
        return _kind_of_nargs(self.action_nargs[name]), False


def _init_nargs(cls: ast.ClassDef) -> Any:
    """The nargs an Action subclass gives argparse when the call passes none (None: a value)."""
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = dict(
                zip(
                    [a.arg for a in positional[len(positional) - len(args.defaults) :]],
                    args.defaults,
                    strict=True,
                )
            )
            defaults.update(
                {
                    a.arg: d
                    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                    if d is not None
                }
            )
            if "nargs" in defaults:
                return _literal(defaults["nargs"])
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and _is_super_init(call):
                    for kw in call.keywords:
                        if kw.arg == "nargs":
                            return _literal(kw.value)
    return None


def _is_super_init(call: ast.Call) -> bool:
    f = call.func
    return (
        isinstance(f, ast.Attribute)
        and f.attr == "__init__"
        and isinstance(f.value, ast.Call)
        and isinstance(f.value.func, ast.Name)
        and f.value.func.id == "super"
    )


def _dest(options: list[str]) -> str:
    """argparse's dest: the first ``--`` string, else the first one, without dashes."""
    long = [s for s in options if s.startswith("--")]
    return (long or options)[0].lstrip("-").replace("-", "_")


def _no_spellings(options: list[str]) -> list[str]:
    """argparse.BooleanOptionalAction: ``--x`` also gets ``--no-x``."""
    out = []
    for s in options:
        out.append(s)
        if s.startswith("--"):
            out.append("--no-" + s[2:])
    return out


def _add_argument_calls(src: Source) -> list[Entry]:
    """Every ``*.add_argument("--x", ...)`` call in server_args.py, in source order."""
    tree = src.modules["srt/server_args.py"]
    entries = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            continue
        where = f"srt/server_args.py:{node.lineno}"
        options = []
        for a in node.args:
            if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
                raise SourceError(f"{where}: option string {ast.unparse(a)} is not a literal")
            options.append(a.value)
        kw = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if any(k.arg is None for k in node.keywords):
            raise SourceError(f"{where}: **kwargs in add_argument")
        entries.append(_entry(src, options, kw, where))
    return entries


def _class_defaults(tree: ast.Module, name: str) -> dict[str, ast.AST]:
    """The field defaults written in ``class name``'s body (the last one of a name wins)."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and item.value is not None
                ):
                    out[item.target.id] = item.value
    return out


def _default_node(src: Source, node: ast.AST | None) -> ast.AST | None:
    """``default=ServerArgs.x`` (to 0.5.18) or ``default=_declared_default("x")`` (0.5.20+):
    the field's own default, from the ServerArgs body or the namespace classes."""
    field_name = None
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ServerArgs"
    ):
        field_name = node.attr
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_declared_default"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        field_name = str(node.args[0].value)
    if field_name is None:
        return node
    return src.field_defaults.get(field_name, node)


def _entry(src: Source, options: list[str], kw: dict[str, ast.AST], where: str) -> Entry:
    dest = _literal(kw.get("dest")) or _dest(options)
    if "action" in kw:
        kind, negatable = src.action_kind(kw["action"], kw.get("nargs"), where)
        if negatable:
            options = _no_spellings(options)
    elif "nargs" in kw:
        kind = _kind_of_nargs(_literal(kw["nargs"]))
    else:
        kind = "value"
    choices = _literal(kw.get("choices")) if "choices" in kw else None
    if "default" in kw:
        default = _literal(_default_node(src, kw["default"]))
    else:  # argparse: store_true's default is False, store_false's True
        default = {"store_true": False, "store_false": True}.get(_literal(kw.get("action")))
    return Entry(options, dest, kind, default, choices)


# --- from 0.5.14: options derived from annotated record fields -----------------------------


def _subscript_parts(node: ast.AST) -> tuple[str, list[ast.AST]] | None:
    """``X[a, b]`` -> ("X", [a, b]); ``X[a]`` -> ("X", [a])."""
    if not isinstance(node, ast.Subscript):
        return None
    try:
        head = _name(node.value)
    except SourceError:
        return None
    sl = node.slice
    return head, list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]


def _unwrap_optional(tp: ast.AST) -> ast.AST:
    """arg_utils ``_unwrap_optional``: ``Optional[X]``, ``Union[X, None]``, ``X | None`` -> X."""
    parts = _subscript_parts(tp)
    if parts and parts[0] == "Optional":
        return parts[1][0]
    if parts and parts[0] == "Union":
        rest = [a for a in parts[1] if not (isinstance(a, ast.Constant) and a.value is None)]
        return rest[0] if len(rest) == 1 else tp
    if isinstance(tp, ast.BinOp) and isinstance(tp.op, ast.BitOr):
        sides = [tp.left, tp.right]
        rest = [a for a in sides if not (isinstance(a, ast.Constant) and a.value is None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


@dataclass
class ArgMeta:
    values: dict[str, ast.AST]

    def get(self, key: str) -> Any:
        return _literal(self.values.get(key))


def _field_entry(
    src: Source,
    name: str,
    annotation: ast.AST,
    default: ast.AST | None,
    where: str,
    aliases_types: dict[str, ast.AST],
) -> Entry | None:
    parts = _subscript_parts(annotation)
    if parts is None or parts[0] not in ("A", "Annotated"):
        return None
    raw, metadata = parts[1][0], parts[1][1:]
    meta: ArgMeta | None = None
    for m in metadata:  # arg_utils._unwrap_annotated: the first Arg or str wins
        if isinstance(m, ast.Call) and isinstance(m.func, ast.Name) and m.func.id == "Arg":
            if any(k.arg is None for k in m.keywords) or m.args:
                raise SourceError(f"{where}: Arg(...) with positional or ** arguments")
            meta = ArgMeta({k.arg: k.value for k in m.keywords if k.arg is not None})
            break
        if (isinstance(m, ast.Constant) and isinstance(m.value, str)) or isinstance(
            m, ast.JoinedStr
        ):
            meta = ArgMeta({})
            break
        if isinstance(m, ast.Name):
            raise SourceError(f"{where}: metadata {m.id} is a name the static reader cannot follow")
    if meta is None or meta.get("no_cli") is True:
        return None
    cli_name = meta.get("cli_name") or "--" + name.replace("_", "-")
    aliases = meta.get("aliases") or []
    if "aliases" in meta.values and meta.get("aliases") is None:
        raise SourceError(f"{where}: aliases are not a literal list")
    options = [cli_name, *aliases]
    value_default = _literal(default)
    if "action" in meta.values:
        action_nargs = None
        kwargs = meta.values.get("action_kwargs")
        if isinstance(kwargs, ast.Dict):
            for k, v in zip(kwargs.keys, kwargs.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "nargs":
                    action_nargs = v
        kind, negatable = src.action_kind(meta.values["action"], action_nargs, where)
        if negatable:
            options = _no_spellings(options)
        return Entry(options, name, kind, value_default, None)
    inner = _unwrap_optional(raw)
    if isinstance(inner, ast.Name) and inner.id in aliases_types:
        inner = _unwrap_optional(aliases_types[inner.id])
    inner_parts = _subscript_parts(inner)
    choices = meta.get("choices")
    if inner_parts and inner_parts[0] == "Literal":
        literal = [_literal(v) for v in inner_parts[1]]
        return Entry(options, name, "value", value_default, choices or literal)
    if inner_parts and inner_parts[0] in ("List", "list") and "type_parser" not in meta.values:
        nargs = meta.get("nargs") or "+"
        return Entry(options, name, _kind_of_nargs(nargs), value_default, choices)
    if isinstance(inner, ast.Name) and inner.id == "bool":
        return Entry(options, name, "flag", value_default, None)
    nargs = meta.get("nargs")
    kind = _kind_of_nargs(nargs) if nargs else "value"
    return Entry(options, name, kind, value_default, choices)


def _class_fields(
    src: Source, cls: ast.ClassDef, rel: str, types: dict[str, ast.AST]
) -> list[Entry]:
    # A name annotated twice in one class body is one field: the class's __annotations__
    # keeps the first position and the last annotation (0.5.16 declares dcp_size twice).
    last: dict[str, ast.AnnAssign] = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            last[node.target.id] = node
    entries = []
    for name, node in last.items():
        where = f"{rel}:{node.lineno} {cls.name}.{name}"
        entry = _field_entry(src, name, node.annotation, node.value, where, types)
        if entry is not None:
            entries.append(entry)
    return entries


def _module_types(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level ``Name = <annotation>`` assignments a field's type may name."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            out[node.targets[0].id] = node.value
    return out


def _uses_dataclass_fields(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id == "add_cli_args_from_dataclass"
        for n in ast.walk(tree)
    )


def _namespace_names(tree: ast.Module) -> list[str] | None:
    """The classes of ``_INPUT_NAMESPACES = [...]`` in server_args.py (0.5.20+), in order."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_INPUT_NAMESPACES" for t in node.targets)
            and isinstance(node.value, ast.List)
        ):
            return [_name(e) for e in node.value.elts]
    return None


def _dataclass_fields(src: Source) -> list[Entry]:
    tree = src.modules["srt/server_args.py"]
    if not _uses_dataclass_fields(tree):
        return []
    classes: dict[str, tuple[ast.ClassDef, str, dict[str, ast.AST]]] = {}
    for rel, mod in src.modules.items():
        types = _module_types(mod)
        for node in mod.body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, (node, rel, types))
    names = _namespace_names(tree)
    if names is None:
        names = ["ServerArgs"]
    entries: list[Entry] = []
    for name in names:
        if name not in classes:
            raise SourceError(f"namespace class {name} is not defined in the files read")
        cls, rel, types = classes[name]
        for base in cls.bases:
            base_name = _name(base)
            if base_name in classes and base_name != name:
                raise SourceError(f"{rel}: {name} inherits fields from {base_name}: not read")
        entries += _class_fields(src, cls, rel, types)
    return entries


def table_from_source(sglang_dir: Path, version: str) -> dict[str, Any]:
    """The option table of the release whose package directory is ``sglang_dir``."""
    src = Source.read(sglang_dir)
    entries = [Entry(["-h", "--help"], "help", "flag", "==SUPPRESS==", None)]
    entries += _dataclass_fields(src) + _add_argument_calls(src)
    seen: dict[str, str] = {}
    for e in entries:
        for s in e.options:
            if s in seen:
                raise SourceError(
                    f"{s} is registered twice ({seen[s]}, {e.dest}): argparse refuses it"
                )
            seen[s] = e.dest
    return {
        "sglang_version": version,
        "allow_abbrev": True,
        "options": [e.as_json() for e in entries],
    }


def compare(static: dict[str, Any], imported: dict[str, Any]) -> list[str]:
    """Where two tables differ in what the launcher reads: option strings, dest, kind."""

    def index(table: dict[str, Any]) -> dict[str, tuple[str, str, tuple[str, ...]]]:
        return {
            s: (o["dest"], o["kind"], tuple(o["options"]))
            for o in table["options"]
            for s in o["options"]
        }

    a, b = index(static), index(imported)
    lines = [f"{s}: only in the table read from source" for s in sorted(a.keys() - b.keys())]
    lines += [f"{s}: only in the imported table" for s in sorted(b.keys() - a.keys())]
    for s in sorted(a.keys() & b.keys()):
        if a[s] != b[s]:
            lines.append(f"{s}: source {a[s]} != imported {b[s]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sglang_dir", type=Path, help="the sglang package directory of a release")
    parser.add_argument("version", help="its release number, written into the table")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--output", type=Path, help="file to write the table to")
    what.add_argument("--compare", type=Path, metavar="TABLE", help="a table made by importing")
    args = parser.parse_args(argv)
    try:
        table = table_from_source(args.sglang_dir, args.version)
    except (SourceError, OSError, SyntaxError) as exc:
        print(f"cannot read the options of {args.sglang_dir}: {exc}", file=sys.stderr)
        return 1
    if args.compare:
        diff = compare(table, json.loads(args.compare.read_text()))
        print("\n".join(diff) or f"same options, dests and kinds as {args.compare}")
        return 1 if diff else 0
    args.output.write_text(json.dumps(table, indent=1) + "\n")
    print(
        f"wrote {len(table['options'])} options of sglang {args.version} "
        f"(read from source) to {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
