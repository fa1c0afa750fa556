#!/usr/bin/env python3
"""Write the environment variable names that SGLang reads, over every release given, to
tests/data/sglang-env-names.txt (one name a line): what tests/test_settings_env_names.py
compares the launcher's own setting names with.

Read statically from each unzipped wheel (`pip download --no-deps sglang==X`, unzip):
the `EnvBool/EnvInt/...` attributes of srt/environ.py (srt/envs.py where a release has
one), and every `os.environ.get("X")`, `os.environ["X"]`, `os.getenv("X")`,
`get_bool_env_var("X")`, `get_int_env_var("X")`, `get_float_env_var("X")` and `envs.X` in
the package.

    python3 scripts/extract-sglang-env-names.py /work/sglang-src/*/ \
        > tests/data/sglang-env-names.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CALL = re.compile(
    r"(?:os\.environ\.get|os\.getenv|get_bool_env_var|get_int_env_var|get_float_env_var"
    r"|os\.environ\[|environ\.get)\(?\s*[\"']([A-Z][A-Z0-9_]{2,})[\"']"
)
ENVS_ATTR = re.compile(r"\benvs\.([A-Z][A-Z0-9_]{2,})\b")
CLASS_ATTR = re.compile(r"^\s+([A-Z][A-Z0-9_]{2,})\s*=\s*Env[A-Za-z]*\(", re.M)


def names_of(release_dir: Path) -> set[str]:
    found: set[str] = set()
    for path in (release_dir / "sglang").rglob("*.py"):
        text = path.read_text(errors="replace")
        found.update(CALL.findall(text))
        found.update(ENVS_ATTR.findall(text))
        if path.name in ("environ.py", "envs.py"):
            found.update(CLASS_ATTR.findall(text))
    return found


def main(dirs: list[str]) -> None:
    releases = sorted(Path(d).resolve() for d in dirs)
    union: set[str] = set()
    for release in releases:
        union |= names_of(release)
    print("# environment variables SGLang reads; releases: " + " ".join(r.name for r in releases))
    print("# made by scripts/extract-sglang-env-names.py (see its docstring)")
    for name in sorted(union):
        print(name)


if __name__ == "__main__":
    main(sys.argv[1:])
