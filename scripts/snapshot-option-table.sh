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
# https://download.pytorch.org/whl/cpu), TORCH (the torch requirement, default the release's
# pin as a +cpu build).
set -euo pipefail

# Without torch at hand, read the release's source instead (nothing is imported or installed):
#
#   scripts/snapshot-option-table.sh --source DIR/sglang 0.5.21   # DIR: `pip download
#                                                                  # --no-deps sglang==0.5.21`, unzipped
#
# runs scripts/option_table_from_source.py (docs/sglang-releases.md says what it reads) and
# the same check.
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ "$#" -eq 3 ] && [ "$1" = "--source" ]; then
    out="$repo/vast_sglang_launcher/plan/data/server-args-$3.json"
    python3 "$repo/scripts/option_table_from_source.py" "$2" "$3" --output "$out"
    PYTHONPATH="$repo" python3 -m vast_sglang_launcher.option_table --check "$out"
    exit
fi
if [ "$#" -ne 1 ]; then
    echo "usage: $0 SGLANG_VERSION | $0 --source SGLANG_PACKAGE_DIR SGLANG_VERSION" >&2
    exit 2
fi
version=$1
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
pip_install() { "$vpy" -m pip install -q --disable-pip-version-check --no-warn-conflicts "$@"; }

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
# CPU torch only: PyPI's Linux torch is the CUDA build (gigabytes with its nvidia-* wheels).
# A `+cpu` local version exists only among the CPU wheels, so asking for one keeps pip off it.
# TORCH overrides the requirement, e.g. TORCH='torch==2.13.0+cpu' when the pinned version
# has no CPU wheel where you can reach.
pinned=$(pin torch | sed -n 's/^torch *== *\([^,; ]*\)$/\1/p')
torch_req=${TORCH:-torch==${pinned:?sglang $version pins no exact torch: set TORCH}+cpu}
echo "== $torch_req (from $torch_index, or pip's configured find-links)"
if ! pip_install --retries 1 --timeout 30 --no-deps --extra-index-url "$torch_index" "$torch_req"; then
    echo "cannot install $torch_req: set TORCH_INDEX to a reachable mirror of the CPU wheels," \
        "or TORCH to a CPU torch you can reach" >&2
    exit 1
fi
torch_version=$("$vpy" -c 'import importlib.metadata as m; print(m.version("torch"))')
case "$torch_version" in
    *+cpu) ;;
    *) echo "torch $torch_version is not a CPU build; refusing to pull its CUDA wheels" >&2; exit 1 ;;
esac
pip_install "torch==$torch_version"  # its small dependencies, torch itself stays

# The CPU torchvision / torchaudio release to install: torchvision 0.(x+15) goes with torch
# 2.x; torchaudio at the release's pin when it pins one exactly.
torch_for() {
    local minor=${torch_version#2.}
    minor=${minor%%.*}
    case "$1" in
        torchvision) echo "0.$((minor + 15)).*" ;;
        *) pin "$1" | sed -n 's/^[a-z]* *== *\([^,; ]*\)$/\1+cpu/p' | grep . || echo "*" ;;
    esac
}
reqs=()
for name in transformers tokenizers; do
    r=$(pin "$name")
    reqs+=("${r:-$name}")
done
echo "== ${reqs[*]}"
pip_install "${reqs[@]}"

# Import sglang.srt.server_args; install whatever light module it still lacks, and retry.
for _ in $(seq 1 150); do
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
        attr) dist=attrs ;;
        jwt) dist=PyJWT ;;
        multipart) dist="python-multipart" ;;
        *) dist=$missing ;;
    esac
    req=$(pin "$(printf '%s' "$dist" | tr '_.' '--' | tr '[:upper:]' '[:lower:]')")
    req=${req:-$dist}
    echo "== $req (server_args needs module $missing)"
    case "$dist" in
        torchvision | torchaudio)
            # Built against one torch: only a CPU build for the installed torch will do, and
            # anything else would pull torch's CUDA wheels.
            cpu=$(printf '%s' "$req" | sed 's/[=<>!~].*//')
            if ! pip_install --retries 1 --timeout 30 --no-deps --extra-index-url "$torch_index" \
                "$cpu==$(torch_for "$cpu")"; then
                echo "cannot install a CPU $cpu for torch $torch_version from $torch_index" >&2
                exit 1
            fi
            ;;
        *)
            # No dependencies: what the module itself still lacks is the next missing module.
            pip_install --no-deps "$req"
            ;;
    esac
done

echo "== writing $out"
PYTHONPATH="$repo" "$vpy" -m vast_sglang_launcher.option_table --output "$out"
PYTHONPATH="$repo" "$vpy" -m vast_sglang_launcher.option_table --check "$out"
