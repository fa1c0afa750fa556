"""`sglang.srt.server_args` of the stand-in SGLang base image (tests/image): just enough for
the Dockerfile's option-table step, which calls `ServerArgs.add_cli_args(parser)` (the real
one: sglang 0.5.6.post2 `srt/server_args.py`, `ServerArgs.add_cli_args`, a staticmethod that
adds every server option to an argparse parser). The options are those of the shipped 0.5.6.post2
table, added by the test stand-in's own parser builder, so the table the build writes is the
shipped one again: this proves the build step runs SGLang's Python on an installed `sglang`,
not that a real release's parser is readable (tests/plan/test_option_table.py does that)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

_DIR = Path("/opt/sglang-standin")
_spec = importlib.util.spec_from_file_location("sglang_standin", _DIR / "sglang_standin.py")
assert _spec is not None and _spec.loader is not None
_standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_standin)


class ServerArgs:
    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        built = _standin.build_parser(_DIR / "server-args-0.5.6.post2.json")
        for action in built._actions:
            if action.dest != "help":
                parser._add_action(action)
