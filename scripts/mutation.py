#!/usr/bin/env python3
"""Mutation run over the launcher's pure modules: one AST change at a time, each module's
fast tests against every mutant, the kill rate per module and the survivors.

    nice -n 10 python scripts/mutation.py              # all seven modules, 2 jobs
    nice -n 10 python scripts/mutation.py redact.py -j 1 --timeout 60

A mutant is one of: a flipped comparison (`<` -> `<=`, `==` -> `!=`, `in` -> `not in`, ...),
`and` <-> `or`, a dropped `not`, a changed arithmetic operator, a changed constant (True <->
False, a number + 1, a code string in a function — one without blanks — changed; prose,
docstrings and the modules' tables of strings are left alone), or a deleted statement inside
a function (replaced by `pass`). Each is spliced into the module's source text at the node's
position, so line numbers stay those of the file.

Each mutant runs in a child forked from this process (pytest and the third-party packages are
imported once, the launcher's package never in the parent): the child installs an import hook
that serves the mutated source for the one module, runs `pytest -x` on the module's tests and
exits with pytest's status. Killed: the tests fail (or pass the per-mutant timeout). The
tests are in-process unit tests: a test that runs the launcher in a subprocess would see the
unmutated package (so such tests are not listed here).

`scripts/mutation-equivalent.txt` lists the mutants no test can tell from the original, one
a line with its reason; they are left out of the figure. A mutant is named by its key:
`module::function: mutation #n` (n counts equal mutations in the same function), which
survives edits elsewhere in the file.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.abc
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vast_sglang_launcher"
EQUIVALENT = Path(__file__).with_name("mutation-equivalent.txt")

# module (under the package) -> its fast, in-process tests (pytest arguments, from ROOT)
MODULES: dict[str, list[str]] = {
    "plan/build.py": ["tests/plan/test_build_units.py"],
    "plan/options.py": ["tests/plan/test_options_units.py"],
    "plan/user_args.py": ["tests/plan/test_user_args.py"],
    "redact.py": ["tests/test_redact.py"],
    "supervise/restart_policy.py": ["tests/supervise/test_restart_policy.py"],
    "supervise/failure_hints.py": [
        "tests/supervise/test_failure_hints.py",
        "-k",
        "not gives_up_at_once and not restarts_with_serving_advice",
    ],
    "coldstart/phases.py": [
        "tests/coldstart/test_phases_units.py",
        "tests/coldstart/test_coldstart_units.py",
        "tests/supervise/test_progress.py",
        "-k",
        "not test_the_shard_bar_is_seen and not test_readiness_on_ready",
    ],
}

_COMPARE_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_FLIP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
_SYMBOL = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.And: "and",
    ast.Or: "or",
}
# statements a mutation deletes (inside a function body)
_DELETABLE = (
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Return,
    ast.Raise,
    ast.If,
    ast.For,
    ast.While,
    ast.With,
    ast.Try,
    ast.Continue,
    ast.Break,
)


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    what: str
    """The mutation as a person reads it: `a < b  ->  a <= b`."""
    key: str
    start: tuple[int, int]
    end: tuple[int, int]
    replacement: str

    def source(self, original: bytes) -> bytes:
        lines = original.splitlines(keepends=True)
        (l0, c0), (l1, c1) = self.start, self.end
        before = b"".join(lines[: l0 - 1]) + lines[l0 - 1][:c0]
        after = lines[l1 - 1][c1:] + b"".join(lines[l1:])
        return before + self.replacement.encode() + after


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, text: str) -> None:
        self.module = module
        self.text = text
        self.mutants: list[Mutant] = []
        self.scope: list[str] = []
        self.counts: dict[str, int] = {}
        self.in_function = 0

    # --- where we are -------------------------------------------------------------------
    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
        self.scope.append(node.name)
        if not isinstance(node, ast.ClassDef):
            self.visit(node.args)  # defaults are constants worth changing
        function = not isinstance(node, ast.ClassDef)
        self.in_function += function
        for stmt in node.body:
            self.visit(stmt)
        self.in_function -= function
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_arguments(self, node: ast.arguments) -> None:
        for default in [*node.defaults, *node.kw_defaults]:
            if default is not None:
                self.visit(default)

    # never mutated: annotations, imports, asserts (for mypy), f-string parts, TYPE_CHECKING
    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._delete(node)
        if node.value is not None:
            self.visit(node.value)

    def visit_Import(self, node: ast.Import) -> None:
        return

    visit_ImportFrom = visit_Import

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                self.visit(value.value)

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        self._delete(node)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id == "TYPE_CHECKING" for t in node.targets):
            return
        self._delete(node)
        self.visit(node.value)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):  # a docstring
            return
        self._delete(node)
        self.generic_visit(node)

    def generic_stmt(self, node: ast.stmt) -> None:
        self._delete(node)
        self.generic_visit(node)

    visit_AugAssign = visit_Return = visit_Raise = visit_For = visit_While = generic_stmt
    visit_With = visit_Try = visit_Continue = visit_Break = generic_stmt

    # --- mutations ------------------------------------------------------------------------
    def _add(self, node: ast.AST, what: str, replacement: str, expr: bool = True) -> None:
        name = f"{self.module}::{'.'.join(self.scope) or '<module>'}: {what}"
        n = self.counts[name] = self.counts.get(name, 0) + 1
        self.mutants.append(
            Mutant(
                self.module,
                node.lineno,  # type: ignore[attr-defined]
                what,
                f"{name} #{n}",
                (node.lineno, node.col_offset),  # type: ignore[attr-defined]
                (node.end_lineno, node.end_col_offset),  # type: ignore[attr-defined]
                f"({replacement})" if expr else replacement,
            )
        )

    def _delete(self, node: ast.stmt) -> None:
        if not self.in_function or not isinstance(node, _DELETABLE):
            return
        first = ast.get_source_segment(self.text, node) or ""
        self._add(node, f"delete `{_short(first.splitlines()[0])}`", "pass", expr=False)

    def _swap(self, node: ast.expr, old: type, new: type, mutated: ast.expr) -> None:
        what = f"{_SYMBOL[old]} -> {_SYMBOL[new]} in `{_short(ast.unparse(node))}`"
        self._add(node, what, ast.unparse(mutated))

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            flipped = _COMPARE_FLIP.get(type(op))
            if flipped is None:
                continue
            ops = list(node.ops)
            ops[i] = flipped()
            new = ast.Compare(node.left, ops, node.comparators)
            self._add(
                node,
                f"{_SYMBOL[type(op)]} -> {_SYMBOL[flipped]} in `{_short(ast.unparse(node))}`",
                ast.unparse(new),
            )
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        new = ast.BoolOp(other, node.values)
        self._add(
            node,
            f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[type(other)]} in `{_short(ast.unparse(node))}`",
            ast.unparse(new),
        )
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._add(
                node, f"drop `not` in `{_short(ast.unparse(node))}`", ast.unparse(node.operand)
            )
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        flipped = _BINOP_FLIP.get(type(node.op))
        if flipped is not None and not _is_string(node.left):
            new = ast.BinOp(node.left, flipped(), node.right)
            self._add(
                node,
                f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[flipped]} in `{_short(ast.unparse(node))}`",
                ast.unparse(new),
            )
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            new: object = not value
        elif isinstance(value, (int, float)):
            new = value + 1
        elif (
            isinstance(value, (str, bytes))
            and self.in_function
            and not any(c.isspace() for c in str(value))
        ):
            new = "XX" + value + "XX" if isinstance(value, str) else b"XX" + value + b"XX"
        else:
            return
        self._add(node, f"{value!r} -> {new!r}", repr(new))


def _is_string(node: ast.expr) -> bool:
    return isinstance(node, (ast.JoinedStr, ast.Constant)) and isinstance(
        getattr(node, "value", ""), str
    )


def mutants_of(module: str) -> list[Mutant]:
    text = (PACKAGE / module).read_text()
    collector = _Collector(module, text)
    collector.visit(ast.parse(text))
    found = []
    for m in collector.mutants:
        try:  # a splice that does not compile is no mutant (e.g. a constant in a slice)
            compile(m.source(text.encode()), module, "exec")
        except SyntaxError:
            continue
        found.append(m)
    return found


def read_equivalent() -> dict[str, str]:
    """key -> reason, from scripts/mutation-equivalent.txt (`key  # reason`)."""
    found = {}
    for raw in EQUIVALENT.read_text().splitlines() if EQUIVALENT.exists() else []:
        if not raw.strip() or raw.startswith("#"):
            continue
        key, sep, reason = raw.partition("  # ")
        if not sep or not reason.strip():
            sys.exit(f"{EQUIVALENT.name}: every line needs `  # a reason`: {raw}")
        found[key.strip()] = reason.strip()
    return found


# --- running a mutant ------------------------------------------------------------------


class _Serve(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves `source` as module `name` (from its real path); everything else as usual."""

    def __init__(self, name: str, path: Path, source: bytes) -> None:
        self.name, self.path, self.source = name, path, source

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != self.name:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=str(self.path))
        assert spec is not None
        spec.has_location = True
        return spec

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return None

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        module.__file__ = str(self.path)
        exec(compile(self.source, str(self.path), "exec"), module.__dict__)  # noqa: S102


def _child(module: str, source: bytes | None, tests: list[str]) -> None:
    """In the forked child: serve the mutant, run the tests quietly, exit with their status."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        if source is not None:
            name = "vast_sglang_launcher." + module.removesuffix(".py").replace("/", ".")
            sys.meta_path.insert(0, _Serve(name, PACKAGE / module, source))
        import pytest

        status = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests])
        os._exit(int(status))
    except BaseException:
        os._exit(99)


@dataclass
class Result:
    mutant: Mutant | None
    status: int  # pytest's exit status; -1: timed out
    seconds: float


def run_all(
    jobs: list[tuple[str, Mutant | None, bytes | None]],
    tests: dict[str, list[str]],
    parallel: int,
    timeout: float,
) -> Iterator[Result]:
    """Fork up to `parallel` children at once; yield each result as it ends."""
    pending = list(reversed(jobs))
    running: dict[int, tuple[Mutant | None, float]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            module, mutant, source = pending.pop()
            pid = os.fork()
            if pid == 0:
                _child(module, source, tests[module])
            running[pid] = (mutant, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (mutant, began) in list(running.items()):
                if now - began > timeout:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    del running[child]
                    yield Result(mutant, -1, now - began)
            time.sleep(0.02)
            continue
        if pid not in running:
            continue
        mutant, began = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # anything the tests left in its session
        yield Result(mutant, code, time.monotonic() - began)


def _preload() -> None:
    """Import once in the parent what every child needs, never the launcher itself."""
    import _pytest.assertion.rewrite
    import _pytest.fixtures
    import _pytest.main
    import _pytest.python
    import _pytest.terminal
    import httpx
    import psutil
    import pydantic_settings
    import pytest
    import structlog

    del _pytest, httpx, psutil, pydantic_settings, pytest, structlog
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # xdist and friends: not needed here

    assert not any(m.startswith("vast_sglang_launcher") for m in sys.modules)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: {len(MODULES)})")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="children at once (2)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per mutant (120)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    args = parser.parse_args()
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"not a mutated module: {', '.join(unknown)} (one of {', '.join(MODULES)})")
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT / "tests"))
    equivalent = read_equivalent()
    every = {m: mutants_of(m) for m in modules}
    if args.list:
        for found in every.values():
            for mut in found:
                print(f"{mut.module}:{mut.line}: {mut.key}")
        return 0
    _preload()
    began = time.monotonic()
    # the unmutated modules must pass their tests first
    baseline = {m: run_all([(m, None, None)], MODULES, 1, args.timeout) for m in modules}
    broken = [m for m, results in baseline.items() if any(r.status for r in results)]
    if broken:
        print(f"the unmutated tests fail for: {', '.join(broken)}", file=sys.stderr)
        return 1
    jobs = []
    for module, found in every.items():
        original = (PACKAGE / module).read_bytes()
        jobs += [(module, m, m.source(original)) for m in found if m.key not in equivalent]
    survivors: dict[str, list[Mutant]] = {m: [] for m in modules}
    killed = dict.fromkeys(modules, 0)
    for done, result in enumerate(run_all(jobs, MODULES, args.jobs, args.timeout), 1):
        mutant = result.mutant
        assert mutant is not None
        if result.status == 0:
            survivors[mutant.module].append(mutant)
            print(f"survived {mutant.module}:{mutant.line}: {mutant.key}", file=sys.stderr)
        else:
            killed[mutant.module] += 1
        if sys.stderr.isatty():
            print(f"\r{done}/{len(jobs)} mutants", end="", file=sys.stderr, flush=True)
        elif done % 50 == 0:
            print(f"{done}/{len(jobs)} mutants", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"{'module':<32}{'mutants':>8}{'equiv.':>8}{'killed':>8}{'rate':>8}")
    all_killed = all_counted = all_total = 0
    for module in modules:
        total = len(every[module])
        eq = sum(m.key in equivalent for m in every[module])
        counted = total - eq
        rate = killed[module] / counted if counted else 1.0
        all_killed += killed[module]
        all_counted += counted
        all_total += total
        print(f"{module:<32}{total:>8}{eq:>8}{killed[module]:>8}{rate:>8.0%}")
    overall = all_killed / all_counted if all_counted else 1.0
    print(f"{'all':<32}{all_total:>8}{all_total - all_counted:>8}{all_killed:>8}{overall:>8.0%}")
    print(f"run time {time.monotonic() - began:.0f} s, {args.jobs} jobs")
    stale = [k for k in equivalent if not any(m.key == k for f in every.values() for m in f)]
    if stale and not args.modules:
        print(f"\n{EQUIVALENT.name}: {len(stale)} line(s) match no mutant any more:")
        for key in stale:
            print(f"  {key}")
    for module in modules:
        for mut in sorted(survivors[module], key=lambda m: m.line):
            print(f"survived {mut.module}:{mut.line}: {mut.what}\n    key: {mut.key}")
    return 0 if all(not s for s in survivors.values()) else 3


if __name__ == "__main__":
    sys.exit(main())
