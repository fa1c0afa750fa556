"""Reading the user's words as SGLang's argparse reads them (allow_abbrev, `=`, nargs, `--`,
negative numbers), resolving the launcher's options in a table, and reading table files.
What argparse does was read in CPython 3.11 Lib/argparse.py (`_parse_optional`,
`_get_option_tuples`, `_negative_number_matcher`, `_get_nargs_pattern`). The mutation run
(scripts/mutation.py) uses these for plan/options.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.plan.known_options import ATTN_DP, DP, TP, Known
from vast_sglang_launcher.plan.options import (
    OptionTable,
    read_table,
    read_user_options,
    scan,
    snapshot,
    snapshot_versions,
)

T = snapshot("0.5.6.post2")
TP_DEST = T.by_string["--tp-size"].dest  # tensor_parallel_size (tp_size from 0.5.14)
DP_DEST = T.by_string["--dp-size"].dest


def dest_values(tokens: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    return [(o.dest, o.values) for o in scan(T, tokens).occurrences]


def problems(tokens: list[str]) -> list[str]:
    return scan(T, tokens).problems


def test_abbreviations_equals_and_aliases_resolve_to_the_dest() -> None:
    tp = T.by_string["--tp-size"].dest
    for words in (
        ["--tp", "2"],
        ["--tp-size=2"],
        ["--tensor-parallel-size", "2"],
        ["--tensor-par=2"],
    ):
        found = scan(T, words)
        assert found.problems == [] and found.last(tp) is not None
        assert found.last(tp).value == "2"  # type: ignore[union-attr]


def test_the_last_occurrence_of_a_dest_wins_whatever_its_spelling() -> None:
    found = scan(T, ["--tp", "2", "--model-path", "m", "--tensor-parallel-size", "4"])
    occ = found.last(T.by_string["--tp-size"].dest)
    assert occ is not None
    assert (occ.index, occ.written, occ.value, occ.source) == (
        4,
        "--tensor-parallel-size",
        "4",
        "args",
    )
    assert found.last("no_such_dest") is None


def test_sources_name_each_words_origin() -> None:
    found = scan(T, ["--tp", "2", "--dp", "3"], ["SGLANG_ARGS", "SGLANG_ARGS", "f", "f"])
    assert [o.source for o in found.occurrences] == ["SGLANG_ARGS", "f"]


def test_a_flag_takes_no_value() -> None:
    assert dest_values(["--trust-remote-code", "--tp", "2"])[0] == ("trust_remote_code", ())
    assert problems(["--trust-remote-code=yes"]) == [
        "args: '--trust-remote-code=yes': the flag takes no value"
    ]
    assert dest_values(["--trust-remote-code=yes"]) == []


def test_a_value_option_takes_one_word_and_needs_it() -> None:
    assert dest_values(["--port", "1", "2"])[0] == ("port", ("1",))
    assert problems(["--port", "1", "2"])[0].startswith("args: '2' is not an option")
    assert problems(["--port"]) == ["args: '--port' expects a value and has none"]
    assert problems(["--port", "--tp", "2"]) == ["args: '--port' expects a value and has none"]
    assert dest_values(["--port", "--tp", "2"]) == [(TP_DEST, ("2",))]


def test_a_list_option_takes_every_word_up_to_the_next_option() -> None:
    found = dest_values(["--prompt-tokens-buckets", "1", "2", "3", "--tp", "2"])
    assert found == [("prompt_tokens_buckets", ("1", "2", "3")), (TP_DEST, ("2",))]
    assert dest_values(["--prompt-tokens-buckets"]) == [("prompt_tokens_buckets", ())]


def test_an_optional_value_may_be_left_out() -> None:
    assert dest_values(["--hybrid-kvcache-ratio"]) == [("hybrid_kvcache_ratio", ())]
    assert dest_values(["--hybrid-kvcache-ratio", "0.5", "--tp", "2"]) == [
        ("hybrid_kvcache_ratio", ("0.5",)),
        (TP_DEST, ("2",)),
    ]


def test_negative_numbers_are_values_other_dashes_are_options() -> None:
    assert dest_values(["--base-gpu-id", "-1"]) == [("base_gpu_id", ("-1",))]
    assert dest_values(["--mem-fraction-static", "-.5"]) == [("mem_fraction_static", ("-.5",))]
    assert dest_values(["--mem-fraction-static", "-0.5"]) == [("mem_fraction_static", ("-0.5",))]
    assert problems(["--served-model-name", "-x"])[0] == (
        "args: '--served-model-name' expects a value and has none"
    )
    # a word with a blank is a value even when it starts with a dash (argparse: ' ' in it)
    assert dest_values(["--served-model-name", "-a b"]) == [("served_model_name", ("-a b",))]
    assert dest_values(["--served-model-name", "-"]) == [("served_model_name", ("-",))]


def test_a_stray_word_is_reported_and_the_scan_goes_on() -> None:
    found = scan(T, ["stray", "--tp", "2", "other"])
    assert found.problems == [
        "args: 'stray' is not an option and SGLang takes no positional arguments "
        "(unrecognized argument)",
        "args: 'other' is not an option and SGLang takes no positional arguments "
        "(unrecognized argument)",
    ]
    assert [(o.dest, o.value) for o in found.occurrences] == [(TP_DEST, "2")]
    assert scan(T, [""]).problems[0].startswith("args: '' is not an option")


def test_after_double_dash_nothing_is_an_option() -> None:
    found = scan(T, ["--tp", "2", "--", "--dp", "2"])
    assert found.problems == ["args: arguments after '--' are not options; SGLang rejects '--dp 2'"]
    assert [o.dest for o in found.occurrences] == [TP_DEST]
    assert scan(T, ["--tp", "2", "--"]).problems == []
    assert problems(["--port", "--", "x"]) == [
        "args: '--port' expects a value and has none",
        "args: arguments after '--' are not options; SGLang rejects 'x'",
    ]


def test_unknown_options_are_named_with_a_guess_and_their_values_skipped() -> None:
    assert problems(["--tp-sizes", "2", "--dp", "2"]) == [
        "args: unknown option '--tp-sizes' for SGLang 0.5.6.post2 (did you mean --tp-size?); "
        "SGLang will refuse it"
    ]
    assert dest_values(["--tp-sizes", "2", "--dp", "2"]) == [(DP_DEST, ("2",))]
    assert problems(["--zzz=1"]) == [
        "args: unknown option '--zzz' for SGLang 0.5.6.post2; SGLang will refuse it"
    ]
    # a single-dash word is no abbreviation
    assert problems(["-tp", "2"])[0].startswith("args: unknown option '-tp'")


def test_ambiguous_abbreviations_list_the_candidates() -> None:
    assert problems(["--pp", "2"]) == [
        "args: '--pp' is ambiguous (could be --pp-max-micro-batch-size, --pp-size); "
        "SGLang will refuse it: spell the option out"
    ]
    many = problems(["--d=1"])[0]
    assert many.startswith("args: '--d' is ambiguous (could be --data-parallel-size, ")
    assert many.endswith(" ...); SGLang will refuse it: spell the option out")
    assert many.count(", ") == 7


def test_a_known_option_resolves_in_the_table_whatever_its_dest() -> None:
    r = T.resolve(TP)
    assert (r.flag, r.problem) == ("--tp-size", None)
    assert r.option is not None and "--tensor-parallel-size" in r.option.strings
    missing = T.resolve(ATTN_DP)
    assert missing.flag is None and missing.option is None
    assert missing.problem == (
        "--attn-dp-size / --attention-data-parallel-size is not in the option table of SGLang "
        f"0.5.6.post2 ({T.source})"
    )
    split = T.resolve(Known("--tp-size", ("--dp-size",)))
    assert split.flag is None
    assert split.problem is not None and "ambiguous" in split.problem
    assert "--tp-size -> tensor_parallel_size, --dp-size -> data_parallel_size" in split.problem
    alias_only = T.resolve(Known("--nope", ("--dp-size",)))
    assert alias_only.flag == "--dp-size"


def test_user_options_report_a_missing_option_once() -> None:
    user = read_user_options(T, ["--tp", "2"])
    assert user.last(TP) is not None and user.has(TP) and not user.has(DP)
    assert user.last(ATTN_DP) is None and user.last(ATTN_DP) is None
    assert user.problems == [
        f"--attn-dp-size / --attention-data-parallel-size is not in the option table of SGLang "
        f"0.5.6.post2 ({T.source}): the launcher can neither read nor set it"
    ]
    quiet = read_user_options(T, [])
    assert quiet.last_if_known(ATTN_DP) is None and quiet.problems == []
    newer = read_user_options(snapshot("0.5.23"), ["--attn-dp-size", "4"])
    occ = newer.last_if_known(ATTN_DP)
    assert occ is not None and occ.value == "4"


def test_tables_from_files_and_snapshots(tmp_path: Path) -> None:
    versions = snapshot_versions()
    assert "0.5.6.post2" in versions and "0.5.23" in versions
    assert all(not v.endswith(".json") and not v.startswith("server-args") for v in versions)
    assert T.version == "0.5.6.post2" and T.source == "snapshot server-args-0.5.6.post2.json"
    good = tmp_path / "t.json"
    good.write_text(
        json.dumps({"options": [{"options": ["--a", "--b"], "dest": "a", "kind": "flag"}]})
    )
    table = read_table(good)
    assert table.version == "unknown" and table.source == str(good)
    assert table.by_string["--b"].dest == "a" and table.by_string["--a"].strings == ("--a", "--b")
    assert OptionTable.from_json({"sglang_version": "9", "options": []}, "x").version == "9"


@pytest.mark.parametrize("text", ["{", "{}", '{"options": [{"dest": "a"}]}', "[]"])
def test_an_unreadable_table_is_one_clear_error(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "t.json"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=f"^LAUNCHER_OPTION_TABLE={bad} is unreadable"):
        read_table(bad)
    with pytest.raises(ConfigError, match=r"^X=.* regenerate it with"):
        read_table(bad, "X")
    with pytest.raises(ConfigError, match="is unreadable"):
        read_table(tmp_path / "none.json")


def test_an_exact_option_that_prefixes_others_is_itself() -> None:
    # --quantization is a prefix of --quantization-param-path (and others): argparse takes
    # the exact match
    assert dest_values(["--quantization", "fp8"]) == [("quantization", ("fp8",))]
    assert dest_values(["--quantization=fp8"]) == [("quantization", ("fp8",))]
    assert problems(["--quantization=fp8"]) == []
    assert dest_values(["-h"]) == [("help", ())] and problems(["-h"]) == []


def test_eight_candidates_are_listed_without_an_ellipsis() -> None:
    found = problems(["--hicache", "x"])[0]
    assert found.count(", ") == 7 and " ...)" not in found


def test_nine_candidates_show_eight_and_an_ellipsis() -> None:
    found = problems(["--disagg", "x"])[0]
    assert found.count(", ") == 7 and found.endswith(
        " ...); SGLang will refuse it: spell the option out"
    )


def test_after_an_unknown_option_the_next_option_is_read() -> None:
    assert dest_values(["--zzz", "--tp", "2"]) == [(TP_DEST, ("2",))]


def test_words_after_a_flag_or_an_optional_value_are_not_its_values() -> None:
    assert problems(["--trust-remote-code", "stray"])[0].startswith(
        "args: 'stray' is not an option"
    )
    assert dest_values(["--hybrid-kvcache-ratio", "0.5", "0.6"]) == [
        ("hybrid_kvcache_ratio", ("0.5",))
    ]
    assert problems(["--hybrid-kvcache-ratio", "0.5", "0.6"])[0].startswith("args: '0.6'")
