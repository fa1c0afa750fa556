"""`option-table`: the build-time snapshot of SGLang's parser, read back by the launcher."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import run_launcher

from vast_sglang_launcher.plan.known_options import TP
from vast_sglang_launcher.plan.option_table import table_from_parser
from vast_sglang_launcher.plan.options import (
    OptionTable,
    read_table,
    read_user_options,
    scan,
    snapshot,
)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """The shapes of option SGLang's ServerArgs.add_cli_args declares."""
    parser.add_argument("--model-path", "--model", type=str, required=False)
    parser.add_argument("--tensor-parallel-size", "--tp-size", type=int, default=1)
    parser.add_argument("--enable-metrics", action="store_true")
    parser.add_argument("--cuda-graph-bs", type=int, nargs="+")
    parser.add_argument("--hybrid-kvcache-ratio", nargs="?", const=0.5, type=float)
    parser.add_argument("--load-format", choices=["auto", "pt"], default="auto")
    parser.add_argument("--weird-default", default=object())


def fake_sglang(tmp_path: Path, version: str, *arguments: str) -> Path:
    """A site dir holding an importable ``sglang`` whose ServerArgs adds ``arguments``."""
    pkg = tmp_path / "site" / "sglang"
    (pkg / "srt").mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (pkg / "srt" / "__init__.py").write_text("")
    body = "".join(f"        {line}\n" for line in arguments)
    (pkg / "srt" / "server_args.py").write_text(
        "class ServerArgs:\n    @staticmethod\n    def add_cli_args(parser):\n" + body
    )
    return tmp_path / "site"


def test_table_from_parser_describes_every_option() -> None:
    table = table_from_parser(add_cli_args, "9.9.9")
    by_dest = {o["dest"]: o for o in table["options"]}
    assert table["sglang_version"] == "9.9.9" and table["allow_abbrev"] is True
    assert by_dest["tensor_parallel_size"]["options"] == ["--tensor-parallel-size", "--tp-size"]
    assert [
        by_dest[d]["kind"]
        for d in ("model_path", "enable_metrics", "cuda_graph_bs", "hybrid_kvcache_ratio")
    ] == ["value", "flag", "list", "optional"]
    assert by_dest["load_format"]["choices"] == ["auto", "pt"]
    assert isinstance(by_dest["weird_default"]["default"], str)
    json.dumps(table)  # everything in it is plain JSON


def test_written_table_resolves_like_sglang(tmp_path: Path) -> None:
    table = OptionTable.from_json(table_from_parser(add_cli_args, "9.9.9"), "built")
    occ = read_user_options(table, ["--tp", "4", "--cuda-graph-bs", "1", "2"]).last(TP)
    assert occ is not None and occ.value == "4"


def test_command_writes_the_file_the_launcher_prefers(tmp_path: Path) -> None:
    site = fake_sglang(
        tmp_path,
        "0.5.9",
        'parser.add_argument("--model-path", "--model")',
        'parser.add_argument("--tensor-parallel-size", "--tp-size", type=int)',
        'parser.add_argument("--brand-new-flag", action="store_true")',
    )
    out = tmp_path / "etc" / "sglang-options.json"
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = run_launcher("option-table", "--output", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "sglang 0.5.9" in proc.stdout
    table = read_table(out)
    assert table.version == "0.5.9"
    assert scan(table, ["--brand-new-flag"]).problems == []
    assert scan(snapshot("0.5.8"), ["--brand-new-flag"]).problems  # the snapshot lacks it


def test_command_without_sglang_says_which_python(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vast_sglang_launcher",
            "option-table",
            "--output",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "sglang is not importable" in proc.stderr and sys.executable in proc.stderr
    assert "Traceback" not in proc.stderr


def test_standalone_module_needs_only_the_standard_library(tmp_path: Path) -> None:
    """The image runs it with SGLang's Python, where the launcher's dependencies are absent."""
    site = fake_sglang(
        tmp_path,
        "0.5.6.post2",
        'parser.add_argument("--tensor-parallel-size", "--tp-size", type=int)',
    )
    out = tmp_path / "options.json"
    blocked = "; ".join(
        f"sys.modules[{m!r}] = None"
        for m in ("pydantic", "pydantic_settings", "structlog", "httpx", "psutil")
    )
    code = (
        f"import runpy, sys; {blocked}; sys.argv = ['x', '--output', {str(out)!r}]; "
        "runpy.run_module('vast_sglang_launcher.option_table', run_name='__main__')"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert read_table(out).version == "0.5.6.post2"


def test_standalone_drift_check_needs_only_the_standard_library() -> None:
    """`python -m vast_sglang_launcher.option_table --check` runs in SGLang's Python too."""
    data = Path(__file__).resolve().parents[2] / "vast_sglang_launcher" / "plan" / "data"
    tables = sorted(str(p) for p in data.glob("server-args-*.json"))
    blocked = "; ".join(
        f"sys.modules[{m!r}] = None"
        for m in ("pydantic", "pydantic_settings", "structlog", "httpx", "psutil")
    )
    code = (
        f"import runpy, sys; {blocked}; sys.argv = ['x', '--check', *{tables!r}]; "
        "runpy.run_module('vast_sglang_launcher.option_table', run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert [line.split(": ")[1] for line in proc.stdout.splitlines()] == [
        "ok (13 launcher options resolve to one option each)"
    ] * len(tables)
