"""Option resolution must agree with SGLang's own argparse on every spelling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import real_parse

from vast_sglang_launcher.plan.options import OptionTable, read_table, scan, snapshot

DATA = Path(__file__).resolve().parents[2] / "vast_sglang_launcher" / "plan" / "data"
TABLES = sorted(DATA.glob("server-args-*.json"))
if not TABLES:  # a loud error, not a silently empty parametrization
    raise FileNotFoundError(f"no server-args-*.json in {DATA}: the checkout is broken")


CASES = [
    ["--tp", "2"],
    ["--tp-size", "2"],
    ["--tensor-parallel-size=2"],
    ["--tensor-par", "4"],
    ["--tp=2"],
    ["--tp", "2", "--tp-size", "4"],
    ["--tensor-parallel-size", "8", "--tp", "2"],
    ["--dp", "2"],
    ["--dp-size=2", "--pp-size", "2"],
    ["--data-parallel", "3"],
    ["--ep", "4"],
    ["--ep-size", "4"],
    ["--nnodes", "2", "--node-rank", "1", "--dist-init-addr", "10.0.0.1:5000"],
    ["--nccl-init-addr", "h:1"],
    ["--cuda-graph-bs", "1", "2", "4", "--tp", "2"],  # 0.5.23: ambiguous (-decode, -prefill)
    ["--numa-node", "0", "1", "--tp", "2"],
    ["--enable-dp-attention", "--dp", "2", "--tp", "4"],
    ["--json-model-override-args", '{"a": 1}', "--tp", "2"],
    ["--model", "m2"],
    ["--port", "-1"],
    ["--mem-fraction-static", "0.8"],
]
BAD = [
    ["--pp", "2"],
    ["--bogus"],
    ["--tp"],
    ["stray"],
    ["--tp", "2", "--", "x"],
    ["--enable-dp-attention=1"],
]
# Named by option string: each release gives its own dest (0.5.14 renamed tensor_parallel_size
# to tp_size), which is looked up in the table under test.
OPTIONS = (
    "--tp-size",
    "--dp-size",
    "--pp-size",
    "--ep-size",
    "--nnodes",
    "--node-rank",
    "--dist-init-addr",
    "--model-path",
    "--port",
    "--cuda-graph-bs",
    "--numa-node",
    "--enable-dp-attention",
)
LISTS = ("--cuda-graph-bs", "--numa-node")


def _dests(table: OptionTable) -> dict[str, str]:
    return {table.by_string[o].dest: o for o in OPTIONS if o in table.by_string}


def _ours(table: OptionTable, argv: list[str]) -> dict[str, object]:
    result = scan(table, argv)
    assert result.problems == []
    out: dict[str, object] = {}
    for dest, option in _dests(table).items():
        occ = result.last(dest)
        if occ is not None:
            out[dest] = (
                True if occ.values == () else (list(occ.values) if option in LISTS else occ.value)
            )
    return out


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("argv", CASES, ids=" ".join)
def test_same_dests_as_sglang_argparse(table_path: Path, argv: list[str]) -> None:
    table = OptionTable.from_json(json.loads(table_path.read_text()), table_path.name)
    ns = real_parse(table_path, argv)
    if ns is None:  # only where this release dropped an option of the case: so must we
        assert any(o in argv and o not in table.by_string for o in OPTIONS)
        assert scan(table, argv).problems
        return
    ours = _ours(table, argv)
    defaults = real_parse(table_path, [])
    changed = {d for d in _dests(table) if getattr(ns, d) != getattr(defaults, d)}
    assert set(ours) == changed
    for dest, value in ours.items():
        real = getattr(ns, dest)
        assert (
            str(real)
            if not isinstance(real, (bool, list))
            else [str(v) for v in real]
            if isinstance(real, list)
            else real
        ) == value


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("argv", BAD, ids=" ".join)
def test_what_sglang_rejects_is_reported(table_path: Path, argv: list[str]) -> None:
    table = OptionTable.from_json(json.loads(table_path.read_text()), table_path.name)
    assert real_parse(table_path, argv) is None
    assert scan(table, argv).problems


def test_ambiguous_prefix_names_the_candidates() -> None:
    problems = scan(snapshot("0.5.6.post2"), ["--pp", "2"], ["SGLANG_ARGS"] * 2).problems
    assert problems == [
        "SGLANG_ARGS: '--pp' is ambiguous (could be --pp-max-micro-batch-size, --pp-size); "
        "SGLang will refuse it: spell the option out"
    ]


def test_unknown_option_names_source_and_version() -> None:
    problems = scan(
        snapshot("0.5.6.post2"), ["--bogus", "3"], ["/etc/sglang-args.conf"] * 2
    ).problems
    assert problems == [
        "/etc/sglang-args.conf: unknown option '--bogus' for SGLang 0.5.6.post2; "
        "SGLang will refuse it"
    ]


def test_last_occurrence_wins_across_spellings() -> None:
    table = snapshot("0.5.6.post2")
    result = scan(table, ["--tp", "2", "--tensor-parallel-size=4"], ["a", "a", "b"])
    occ = result.last(table.by_string["--tp-size"].dest)
    assert occ is not None
    assert (occ.value, occ.written, occ.source) == ("4", "--tensor-parallel-size=4", "b")


def test_a_table_file_is_read_back(tmp_path: Path) -> None:
    built = tmp_path / "options.json"
    built.write_text((DATA / "server-args-0.5.8.json").read_text())
    assert read_table(built).version == "0.5.8"


def test_unknown_option_suggests_the_close_spellings() -> None:
    problems = scan(snapshot("0.5.6.post2"), ["--tp-szie", "2"], ["SGLANG_ARGS"] * 2).problems
    assert problems == [
        "SGLANG_ARGS: unknown option '--tp-szie' for SGLang 0.5.6.post2 (did you mean "
        "--tp-size?); SGLang will refuse it"
    ]
