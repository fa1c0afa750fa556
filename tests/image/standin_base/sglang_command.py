#!/usr/bin/python3
"""`sglang` of the stand-in SGLang base image (tests/image): `sglang serve ARGS` runs the
test stand-in server (tests/sglang_standin.py) with ARGS, as the real `sglang serve` runs
the real server with them (sglang 0.5.6.post2 `sglang/cli/main.py`: `serve` is the
subcommand that takes the server's options)."""

import os
import sys

if sys.argv[1:2] != ["serve"]:
    sys.exit("sglang (stand-in base): only `sglang serve [options]` is provided")
standin = "/opt/sglang-standin/sglang_standin.py"
os.environ.setdefault("STANDIN_OPTION_TABLE", "/opt/sglang-standin/server-args-0.5.6.post2.json")
os.execv(sys.executable, [sys.executable, standin, *sys.argv[2:]])
