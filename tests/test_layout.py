"""The package's layout: imports flow cli -> a capability -> the shared top level, a
capability reaches another only through the one function (or type) it documents, and the
capabilities' imports of each other (lazy ones inside functions too) form no cycle."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vast_sglang_launcher"
CAPABILITIES = sorted(
    p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
)
ENTRY_POINTS = {"cli", "__main__", "option_table"}
"""Top-level modules that dispatch into the capabilities (option_table: the image's step)."""
COMPOSER = "settings"
"""The top-level module that composes the capabilities' settings parts (`<cap>/knobs.py`)."""

ALLOWED = {
    ("supervise", "plan"): {"prepare.prepare_plan", "build.LaunchPlan", "versions.at_least"},
    ("supervise", "scaleout"): {"join.gateway_membership"},
    ("supervise", "coldstart"): {
        "gate.wait_for_weights",
        "gate.stop_download",
        "phases.PhaseTracker",
    },
    ("boot", "edge"): {"portal.default_portal_config"},
    ("boot", "coldstart"): {"prefetch.run_foreground", "prefetch.start_background"},
    ("coldstart", "plan"): {"prepare.prepare_plan"},
    # the loading page reads status.json as the status writer and the phase tracker write it
    ("edge", "supervise"): {"status.SERVING_MARKER"},
    ("edge", "coldstart"): {
        "phases.ORDER",
        "phases.TITLES",
        "phases.fmt_duration",
    },
    ("jupyter", "edge"): {"portal.portal_entries"},
    ("jupyter", "boot"): {"packages.pip_python"},
    ("jupyter", "supervise"): {"provisioning_gate.wait_until_gone", "process.set_child_subreaper"},
}
"""(importer, imported) -> the names the importer may take from the imported capability."""


def _imports(path: Path) -> list[tuple[str, str]]:
    """(absolute module inside the package, name) for each `from X import name`, at the top
    of the module or inside a function (a lazy import counts the same)."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    here = list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("vast_sglang_launcher"), path
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            # importlib.import_module("vast_sglang_launcher...") would hide an arrow
            name = node.args[0].value
            called = ast.unparse(node.func)
            if called.endswith("import_module") and isinstance(name, str):
                assert not name.startswith(("vast_sglang_launcher", ".")), (path, name)
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
        module = [*base, *(node.module.split(".") if node.module else [])]
        for alias in node.names:
            found.append((".".join(module), alias.name))
    return found


def _capability(module: str) -> str | None:
    head = module.split(".", maxsplit=1)[0] if module else ""
    return head if head in CAPABILITIES else None


def test_the_capabilities_are_the_subpackages() -> None:
    assert set(CAPABILITIES) >= {"plan", "supervise", "boot", "edge"}


def test_the_shared_top_level_imports_no_capability() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.stem in ENTRY_POINTS or path.stem == COMPOSER:
            continue
        for module, name in _imports(path):
            target = module or name
            assert _capability(target) is None, f"{path.name} imports {target}.{name}"


def test_a_capability_uses_another_only_through_its_documented_entry() -> None:
    for cap in CAPABILITIES:
        for path in (PACKAGE / cap).rglob("*.py"):
            for module, name in _imports(path):
                other = _capability(module) or (_capability(name) if not module else None)
                if other is None or other == cap:
                    continue
                inner = module.split(".", 1)[1] if "." in module else ""
                allowed = ALLOWED.get((cap, other), set())
                assert f"{inner}.{name}" in allowed, (
                    f"{path.relative_to(PACKAGE)} imports {module}.{name}: "
                    f"{cap} may use {other} only through {sorted(allowed) or 'nothing'}"
                )


def _package_arrows() -> dict[tuple[str, str], set[str]]:
    """(importer, imported) capability -> where the importer's modules take names from it."""
    arrows: dict[tuple[str, str], set[str]] = {}
    for cap in CAPABILITIES:
        for path in (PACKAGE / cap).rglob("*.py"):
            for module, name in _imports(path):
                other = _capability(module) or (_capability(name) if not module else None)
                if other is not None and other != cap:
                    arrows.setdefault((cap, other), set()).add(str(path.relative_to(PACKAGE)))
    return arrows


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the directed graph `edges`, as the nodes along it, or None."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in graph.get(node, []):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({("a", "b"), ("b", "c"), ("c", "a")}) == ["a", "b", "c", "a"]
    assert _cycle({("a", "b"), ("a", "c"), ("b", "c")}) is None


def test_the_capabilities_import_each_other_without_a_cycle() -> None:
    arrows = _package_arrows()
    cycle = _cycle(set(arrows))
    assert cycle is None, (
        " -> ".join(cycle or [])
        + ": "
        + "; ".join(
            f"{a} -> {b} in {sorted(arrows[(a, b)])}"
            for a, b in zip(cycle or [], (cycle or [])[1:], strict=False)
        )
    )


def test_every_allowed_arrow_is_used() -> None:
    """The ALLOWED table names only arrows the code has: a removed import shrinks it."""
    assert set(ALLOWED) <= set(_package_arrows()), set(ALLOWED) - set(_package_arrows())


def test_plan_and_coldstart_are_layered_one_way() -> None:
    """The cold start plans (the prefetch learns the served model); the plan reaches the hub
    through the shared `hub`, never through the cold start."""
    arrows = _package_arrows()
    assert ("plan", "coldstart") not in arrows, arrows.get(("plan", "coldstart"))
    assert ("coldstart", "plan") in arrows


def test_each_capability_says_what_it_owns_and_imports_nothing_itself() -> None:
    for cap in CAPABILITIES:
        tree = ast.parse((PACKAGE / cap / "__init__.py").read_text())
        doc = ast.get_docstring(tree)
        assert doc and doc.startswith(f"{cap}:"), cap
        assert "May import" in doc, cap
        assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], cap


def test_the_readme_code_map_names_every_subpackage_and_shared_module() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    code_map = readme.split("## Code map", 1)[1].split("\n## ", 1)[0]
    for cap in CAPABILITIES:
        assert f"`{cap}/`" in code_map, cap
    for path in PACKAGE.glob("*.py"):
        if path.stem != "__init__":
            assert f"`{path.stem}`" in code_map, path.stem


def test_settings_compose_only_the_parts_and_the_parts_only_the_floor() -> None:
    # settings may import a capability only through its part, `<cap>.knobs`; a part imports
    # pydantic and the shared top level (never settings, never its capability's modules), so
    # that the composition has no cycle and `plan/__init__` can stay import-free.
    parts = set()
    for module, name in _imports(PACKAGE / f"{COMPOSER}.py"):
        target = module or name
        cap = _capability(target)
        if cap is not None:
            assert target == f"{cap}.knobs", f"settings imports {target}.{name}"
            parts.add(cap)
    assert parts == {cap for cap in CAPABILITIES if (PACKAGE / cap / "knobs.py").is_file()}
    for path in PACKAGE.glob("*/knobs.py"):
        for module, name in _imports(path):
            target = module or name
            assert _capability(target) is None, f"{path.relative_to(PACKAGE)} imports {target}"
            assert target.split(".")[0] not in {COMPOSER, *ENTRY_POINTS}, path
        third_party = {
            (n.module or "").split(".")[0]
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom) and not n.level
        } | {
            a.name.split(".")[0]
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Import)
            for a in n.names
        }
        assert third_party - set(sys.stdlib_module_names) <= {"pydantic"}, path
