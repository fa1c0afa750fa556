"""scripts/option_table_from_source.py: an option table read from a release's source.

The add_argument form is checked against argparse itself: the same synthetic server_args.py
is read statically and imported, and the two tables must agree. The annotated-field form
(0.5.14+) follows the branches of SGLang's ``arg_groups/arg_utils.py``
``add_cli_args_from_dataclass`` (0.5.14, 0.5.20, 0.5.23 read); each case below names its branch.
The shipped tables are then checked for the release facts docs/sglang-releases.md states.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vast_sglang_launcher.plan.option_table import table_from_parser
from vast_sglang_launcher.plan.options import scan, snapshot, snapshot_versions
from vast_sglang_launcher.plan.versions import version_key

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "option_table_from_source.py"


def _reader() -> ModuleType:
    spec = importlib.util.spec_from_file_location("option_table_from_source", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reader = _reader()

# The shapes SGLang's own add_cli_args uses (0.5.6.post2-0.5.12 server_args.py): a custom
# action with nargs=0 in its __init__ (DeprecatedAction), one whose __init__ passes nargs to
# super() (DeprecatedStoreTrueAction, 0.5.10), one with no nargs at all (LoRAPathAction, given
# nargs="*" at the call), BooleanOptionalAction (0.5.10+), defaults read from ServerArgs.
ADD_ARGUMENT_SOURCE = """
import argparse
import dataclasses


@dataclasses.dataclass
class ServerArgs:
    tp_size: int = 1
    served: str = "x"

    @staticmethod
    def add_cli_args(parser):
        parser.add_argument("--tensor-parallel-size", "--tp-size", type=int,
                            dest="tp_size", default=ServerArgs.tp_size)
        parser.add_argument("--served-name", type=str, default=ServerArgs.served)
        parser.add_argument("--enable-metrics", action="store_true")
        parser.add_argument("--no-warmup", action="store_false")
        parser.add_argument("--cuda-graph-bs", type=int, nargs="+")
        parser.add_argument("--hybrid-ratio", nargs="?", const=0.5, type=float)
        parser.add_argument("--load-format", choices=["auto", "pt"], default="auto")
        parser.add_argument("--old-flag", action=DeprecatedAction, help="gone")
        parser.add_argument("--old-value", action=DeprecatedAction, nargs="+")
        parser.add_argument("--old-store-true", action=DeprecatedStoreTrueAction)
        parser.add_argument("--lora-paths", action=LoRAPathAction, nargs="*")
        parser.add_argument("--lora-one", action=LoRAPathAction)
        parser.add_argument("--enable-tf32", action=argparse.BooleanOptionalAction)
        parser.add_argument("-q", "--quiet-mode", action="count")


class LoRAPathAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)


class DeprecatedAction(argparse.Action):
    def __init__(self, option_strings, dest, nargs=0, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        pass


class DeprecatedStoreTrueAction(argparse.Action):
    def __init__(self, option_strings, dest, new_flag=None, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
"""


def _release(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sglang"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"synthetic_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _by_first(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["options"][0]: o for o in table["options"]}


def test_add_argument_calls_read_statically_match_argparse(tmp_path: Path) -> None:
    root = _release(tmp_path, {"srt/server_args.py": ADD_ARGUMENT_SOURCE})
    static = reader.table_from_source(root, "9.9.9")
    imported = table_from_parser(
        _import(root / "srt" / "server_args.py").ServerArgs.add_cli_args, "9.9.9"
    )
    assert reader.compare(static, imported) == []
    opts = _by_first(static)
    assert opts["--old-flag"]["kind"] == "flag"  # DeprecatedAction: nargs=0, a flag
    assert opts["--old-value"]["kind"] == "list"  # nargs="+" at the call wins over the class's
    assert opts["--lora-one"]["kind"] == "value"  # no nargs anywhere: argparse's one value
    assert opts["--enable-tf32"]["options"] == ["--enable-tf32", "--no-enable-tf32"]
    # the defaults argparse reports, where the source has them
    assert {
        k: opts[k]["default"]
        for k in ("--tensor-parallel-size", "--served-name", "--enable-metrics", "--no-warmup")
    } == {
        "--tensor-parallel-size": 1,
        "--served-name": "x",
        "--enable-metrics": False,
        "--no-warmup": True,
    }
    assert static["options"][0] == imported["options"][0]  # -h/--help first


FIELDS_SOURCE = """
from typing import Annotated, List, Literal, Optional
import argparse
from sglang.srt.arg_groups.arg_utils import A, Arg, Derived

class Parallel(msgspec.Struct):
    tp_size: A[int, Arg(help="tp", aliases=["--tensor-parallel-size"])] = 1
    nnodes: A[int, "The number of nodes."] = 1
    enable_x: A[bool, "a flag"] = False
    cuda_graph_bs: A[Optional[List[int]], "sizes"] = None
    numa: A[list[int] | None, Arg(help="n", nargs="*")] = None
    json_list: A[Optional[List[str]], Arg(help="j", type_parser=json_list_type)] = None
    mode: A[Literal["a", "b"], "mode"] = "a"
    hidden: A[bool, Arg(no_cli=True)] = False
    derived: A[int, Derived(help="not an option")] = 0
    plain: int = 0
    renamed: A[str, Arg(help="r", cli_name="--other-name")] = "r"
    tri: A[Optional[bool], Arg(help="t", action=argparse.BooleanOptionalAction)] = None
    old: A[bool, Arg(help="o", action=DeprecatedAction)] = False
    later: A[int, "first"] = 1
    later: A[int, "second"] = 2

class Model(msgspec.Struct):
    model_path: A[str, Arg(help="m", aliases=["--model"])]

class Unused(msgspec.Struct):
    never: A[int, "not in _INPUT_NAMESPACES"] = 0
"""

SERVER_ARGS_020 = """
import argparse
from sglang.srt.arg_groups.arg_utils import add_cli_args_from_dataclass
from sglang.srt.arg_groups.fields.parallel import Parallel, Model

class ServerArgs:
    @staticmethod
    def add_cli_args(parser):
        add_cli_args_from_dataclass(parser, ServerArgs)
        parser.add_argument("--enable-dp-attention", action=DeprecatedStoreTrueAction)
        parser.add_argument(
            "--reasoning-parser", choices=["auto"], default=_declared_default("reasoning_parser")
        )

_INPUT_NAMESPACES = [Model, Parallel]
"""

ACTIONS = """
import argparse

class DeprecatedAction(argparse.Action):
    def __init__(self, option_strings, dest, error_message=None, nargs=0, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

class DeprecatedStoreTrueAction(argparse.Action):
    def __init__(self, option_strings, dest, new_flag=None, nargs=0, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
"""


def test_annotated_fields_follow_add_cli_args_from_dataclass(tmp_path: Path) -> None:
    root = _release(
        tmp_path,
        {
            "srt/server_args.py": SERVER_ARGS_020,
            "srt/arg_groups/fields/parallel.py": FIELDS_SOURCE,
            "srt/arg_groups/argparse_actions.py": ACTIONS,
        },
    )
    table = reader.table_from_source(root, "0.5.20")
    got = {o["options"][0]: (o["options"], o["dest"], o["kind"]) for o in table["options"]}
    assert got == {
        "-h": (["-h", "--help"], "help", "flag"),
        # Model comes first: _INPUT_NAMESPACES' order, not the file's
        "--model-path": (["--model-path", "--model"], "model_path", "value"),
        "--tp-size": (["--tp-size", "--tensor-parallel-size"], "tp_size", "value"),
        "--nnodes": (["--nnodes"], "nnodes", "value"),
        "--enable-x": (["--enable-x"], "enable_x", "flag"),  # bool: store_true
        "--cuda-graph-bs": (["--cuda-graph-bs"], "cuda_graph_bs", "list"),  # list: nargs "+"
        "--numa": (["--numa"], "numa", "list"),  # Arg(nargs="*")
        "--json-list": (["--json-list"], "json_list", "value"),  # type_parser: one string
        "--mode": (["--mode"], "mode", "value"),  # Literal: choices
        "--other-name": (["--other-name"], "renamed", "value"),  # cli_name, dest the field
        "--tri": (["--tri", "--no-tri"], "tri", "flag"),
        "--old": (["--old"], "old", "flag"),  # action class: nargs=0
        "--later": (["--later"], "later", "value"),
        "--enable-dp-attention": (["--enable-dp-attention"], "enable_dp_attention", "flag"),
        "--reasoning-parser": (["--reasoning-parser"], "reasoning_parser", "value"),
    }
    opts = _by_first(table)
    assert opts["--mode"]["choices"] == ["a", "b"]
    assert opts["--later"]["default"] == 2  # the last annotation of a name wins
    assert list(got).index("--later") == list(got).index("--old") + 1


def test_server_args_class_body_holds_the_fields_before_0_5_20(tmp_path: Path) -> None:
    source = """
    class ServerArgs:
        tp_size: A[int, Arg(help="tp", aliases=["--tensor-parallel-size"])] = 1
        dcp_size: A[int, "first"] = 1
        dcp_size: A[int, "0.5.16 declares it twice"] = 1

        @staticmethod
        def add_cli_args(parser):
            add_cli_args_from_dataclass(parser, ServerArgs)
            parser.add_argument("--config", type=str)
    """
    root = _release(tmp_path, {"srt/server_args.py": source})
    table = reader.table_from_source(root, "0.5.16")
    assert [o["options"][0] for o in table["options"]] == [
        "-h",
        "--tp-size",
        "--dcp-size",
        "--config",
    ]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("parser.add_argument(*names)", "is not a literal"),
        ("parser.add_argument('--x', action=Unknown)", "action class Unknown is not defined"),
        ("parser.add_argument('--x'); parser.add_argument('--x')", "--x is registered twice"),
    ],
)
def test_what_it_cannot_resolve_stops_it(tmp_path: Path, source: str, problem: str) -> None:
    text = f"class ServerArgs:\n    def add_cli_args(parser):\n        {source}\n"
    root = _release(tmp_path, {"srt/server_args.py": text})
    with pytest.raises(reader.SourceError, match=problem):
        reader.table_from_source(root, "9.9.9")


def test_command_line_writes_and_compares(tmp_path: Path) -> None:
    root = _release(tmp_path, {"srt/server_args.py": ADD_ARGUMENT_SOURCE})
    out = tmp_path / "static.json"
    run = [sys.executable, str(SCRIPT), str(root), "9.9.9"]
    proc = subprocess.run([*run, "--output", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "read from source" in proc.stdout, proc.stderr
    imported = table_from_parser(
        _import(root / "srt" / "server_args.py").ServerArgs.add_cli_args, "9.9.9"
    )
    wrong = json.loads(json.dumps(imported))
    next(o for o in wrong["options"] if o["dest"] == "old_flag")["kind"] = "value"
    (tmp_path / "imported.json").write_text(json.dumps(wrong))
    proc = subprocess.run(
        [*run, "--compare", str(tmp_path / "imported.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "--old-flag: source ('old_flag', 'flag', ('--old-flag',)) != "
        "imported ('old_flag', 'value', ('--old-flag',))"
    ]


# --- what the shipped tables say, release by release (read in each release's source) -----

ORDERED = sorted(snapshot_versions(), key=lambda v: version_key(v) or ())


def _from(first: str) -> list[str]:
    want = version_key(first) or ()
    return [v for v in ORDERED if (version_key(v) or ()) >= want]


def _ambiguous(version: str, token: str) -> bool:
    return any("ambiguous" in p for p in scan(snapshot(version), [token, "1"]).problems)


def test_every_release_of_the_range_ships() -> None:
    for version in (
        "0.5.6.post2",
        "0.5.8",
        "0.5.10",
        "0.5.14",
        "0.5.18",
        "0.5.20",
        "0.5.22",
        "0.5.23",
    ):
        assert version in ORDERED


@pytest.mark.parametrize("version", ORDERED)
def test_release_facts(version: str) -> None:
    table = snapshot(version)
    # the dest rename came with the annotated fields of 0.5.14 (Parallel.tp_size)
    tp_dest = "tp_size" if version in _from("0.5.14") else "tensor_parallel_size"
    assert table.by_string["--tp-size"].dest == tp_dest
    assert table.by_string["--enable-dp-attention"].kind == "flag"  # every release
    assert ("--attn-dp-size" in table.by_string) is (version in _from("0.5.22"))
    # --cuda-graph-bs: a list to 0.5.18 (deprecated alias from 0.5.14), gone from 0.5.20
    assert ("--cuda-graph-bs" in table.by_string) is (version not in _from("0.5.20"))
    assert ("--cuda-graph-bs-decode" in table.by_string) is (version in _from("0.5.14"))
    assert _ambiguous(version, "--attention") is (version in _from("0.5.10"))
    assert _ambiguous(version, "--trust") is (version in _from("0.5.18"))
    assert _ambiguous(version, "--context") is (version in _from("0.5.22"))


def test_0_5_8_deprecated_options_are_flags() -> None:
    """0.5.8 server_args.py: both take action=DeprecatedAction, whose __init__ has nargs=0."""
    table = snapshot("0.5.8")
    assert table.by_string["--hybrid-kvcache-ratio"].kind == "flag"
    assert table.by_string["--prefill-round-robin-balance"].kind == "flag"
    assert [o.dest for o in scan(table, ["--hybrid-kvcache-ratio", "--tp", "2"]).occurrences] == [
        "hybrid_kvcache_ratio",
        "tensor_parallel_size",
    ]
