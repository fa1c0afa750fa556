#!/usr/bin/env bash
# Writes docker/constraints.txt: the exact version of every Python package the image installs
# (the launcher's dependencies and supervisord in the launcher's venv, SGLang's gateway, Vast's
# serverless worker and Jupyter in theirs, ipykernel for SGLang's Python), resolved by pip for each Python the image may have
# (3.10 to 3.12), binary wheels only.
# Run it on purpose, when a dependency should move; review and commit the diff.
#   scripts/lock-image-packages.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "lock-image-packages: needs python3 >= 3.11 (tomllib)" >&2
    exit 1
}
mapfile -t requirements < <(python3 - <<'PY'
import re
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(*project["dependencies"], sep="\n")
docker = open("docker/Dockerfile").read()
print("supervisor")  # the launcher's venv installs it beside the launcher (docker/Dockerfile)
print("smg==" + re.search(r"ARG SMG_VERSION=(\S+)", docker).group(1))
print("vastai==" + re.search(r"ARG VASTAI_VERSION=(\S+)", docker).group(1))
print("setuptools")
for name, arg in (("jupyterlab", "JUPYTERLAB"), ("notebook", "NOTEBOOK"), ("ipykernel", "IPYKERNEL")):
    print(f"{name}==" + re.search(rf"ARG {arg}_VERSION=(\S+)", docker).group(1))
PY
)

tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
for version in 3.10 3.11 3.12; do
    python3 -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed \
        --only-binary=:all: --python-version "${version}" --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 \
        --target "${tmp}/target" --report "${tmp}/${version}.json" "${requirements[@]}" \
        2> >(grep -v "is neither a file nor a directory" >&2)
done
python3 - "${tmp}" > docker/constraints.txt <<'PY'
import json
import pathlib
import sys

pins: dict[str, dict[str, str]] = {}
for report in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    python = report.stem
    for item in json.loads(report.read_text())["install"]:
        meta = item["metadata"]
        pins.setdefault(meta["name"].lower(), {})[python] = meta["version"]
print("# What the image installs, exactly: written by scripts/lock-image-packages.sh (do not")
print("# edit by hand; rerun it on purpose and commit the diff). Used as pip constraints by the")
print("# image build and by scripts/image-wheelhouse.sh, which downloads these wheels.")
for name in sorted(pins):
    by_python = pins[name]
    if len(set(by_python.values())) == 1:
        print(f"{name}=={next(iter(by_python.values()))}")
        continue
    for python, version in sorted(by_python.items()):
        print(f'{name}=={version}; python_version == "{python}"')
PY
echo "wrote docker/constraints.txt ($(grep -vc '^#' docker/constraints.txt) packages)"
