#!/usr/bin/env bash
# Write the option table of one SGLang release into the package, from the real release:
#
#   scripts/snapshot-option-table.sh 0.5.24            # -> vast_sglang_launcher/plan/data/
#   PYTHON=python3.12 scripts/snapshot-option-table.sh 0.5.24
#
# No GPU is needed. A throw-away venv gets `pip install --no-deps sglang==VERSION`, the
# transformers and tokenizers versions that release pins, and CPU torch (the version it pins
# when the CPU index has it). Importing sglang.srt.server_args may need a few more of
# sglang's light dependencies: each missing module is installed (at sglang's pin, when it
# pins one) and the import is tried again. The table is then written by the launcher's own
# `python -m vast_sglang_launcher.option_table`, exactly as the image build writes it, and
# checked with `option-table --check`.
#
# Environment: PYTHON (interpreter for the venv, default python3), WORKDIR (where the venv
# goes; default a temporary directory, removed at the end), TORCH_INDEX (CPU wheels, default
# https://download.pytorch.org/whl/cpu).
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 SGLANG_VERSION" >&2
    exit 2
fi
version=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/vast_sglang_launcher/plan/data/server-args-$version.json"
python=${PYTHON:-python3}
torch_index=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
if [ -n "${WORKDIR:-}" ]; then
    work=$WORKDIR
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
venv="$work/venv-sglang-$version"

"$python" -m venv "$venv"
vpy="$venv/bin/python"
pip_install() { "$vpy" -m pip install -q --disable-pip-version-check "$@"; }

echo "== sglang $version (no dependencies)"
pip_install --no-deps "sglang==$version"

# The release's own pins, read from its metadata (sglang is not imported).
pin() {
    "$vpy" - "$1" <<'PY'
import importlib.metadata as md, re, sys
want = sys.argv[1]
for req in md.requires("sglang") or []:
    spec = req.split(";")[0].strip()
    name = re.split(r"[\s\[<>=!~]", spec, maxsplit=1)[0]
    if re.sub(r"[-_.]+", "-", name).lower() == want:
        print(spec)
        break
PY
}
torch_req=$(pin torch)
echo "== CPU ${torch_req:-torch} from $torch_index"
# torch alone from the CPU index (PyPI's Linux torch is the CUDA build, gigabytes), then its
# small dependencies from the usual index.
cpu_torch() { pip_install --retries 1 --timeout 30 --no-deps --index-url "$torch_index" "$1"; }
if ! cpu_torch "${torch_req:-torch}"; then
    echo "   ${torch_req:-torch} is not available from $torch_index: trying its newest torch" >&2
    if ! cpu_torch torch; then
        echo "cannot reach $torch_index (set TORCH_INDEX to a mirror of the CPU wheels)" >&2
        exit 1
    fi
fi
torch_version=$("$vpy" -c 'import importlib.metadata as m; print(m.version("torch"))')
pip_install "torch==$torch_version"
reqs=()
for name in transformers tokenizers; do
    r=$(pin "$name")
    reqs+=("${r:-$name}")
done
echo "== ${reqs[*]}"
pip_install "${reqs[@]}"

# Import sglang.srt.server_args; install whatever light module it still lacks, and retry.
for _ in $(seq 1 60); do
    if err=$("$vpy" -c "import sglang.srt.server_args" 2>&1); then
        break
    fi
    missing=$(printf '%s\n' "$err" | sed -n "s/.*No module named '\([^'.]*\).*/\1/p" | tail -1)
    if [ -z "$missing" ]; then
        printf '%s\n' "$err" | tail -5 >&2
        echo "importing sglang.srt.server_args fails for a reason other than a missing module" >&2
        exit 1
    fi
    case "$missing" in
        zmq) dist=pyzmq ;;
        yaml) dist=pyyaml ;;
        PIL) dist=pillow ;;
        cv2) dist=opencv-python-headless ;;
        google) dist=protobuf ;;
        sklearn) dist=scikit-learn ;;
        dateutil) dist="python-dateutil" ;;
        *) dist=$missing ;;
    esac
    req=$(pin "$(printf '%s' "$dist" | tr '_.' '--' | tr '[:upper:]' '[:lower:]')")
    echo "== ${req:-$dist} (server_args needs module $missing)"
    pip_install "${req:-$dist}"
done

echo "== writing $out"
PYTHONPATH="$repo" "$vpy" -m vast_sglang_launcher.option_table --output "$out"
PYTHONPATH="$repo" "$vpy" -m vast_sglang_launcher.option_table --check "$out"
