#!/usr/bin/env bash
# Fills a wheelhouse for the image build (docker/Dockerfile installs with --no-index from it):
# the launcher's own wheel, built from this checkout, and the wheels of every package that
# docker/constraints.txt pins, for the image's Python and machine. Files already there are
# kept, so a second run downloads nothing.
#   scripts/image-wheelhouse.sh [DIR [PYTHON_VERSION [ARCH]]]
# DIR defaults to build/wheelhouse, PYTHON_VERSION to this python3's (3.10 for
# lmsysorg/sglang:v0.5.6.post2's Ubuntu 22.04), ARCH to this machine's (x86_64, aarch64):
# manylinux wheels for glibc 2.17 to 2.28, which every base of SGLang's images has.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${1:-build/wheelhouse}"
version="${2:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
arch="${3:-$(uname -m)}"
mkdir -p "${dir}"

# WHEELHOUSE_OFFLINE=1 (the image test, which has no network): download nothing, exit 3 when
# the pinned wheels are not there yet, and build the launcher's wheel with the setuptools
# already installed (no build isolation, which would download it).
offline="${WHEELHOUSE_OFFLINE:-}"
isolation=()
[ -z "${offline}" ] || isolation=(--no-build-isolation)
rm -f "${dir}"/vast_sglang_launcher-*.whl
python3 -m pip wheel --quiet --disable-pip-version-check --no-deps "${isolation[@]}" \
    --wheel-dir "${dir}" .
# every pinned package, binary wheels only, for the target Python (its markers decide
# which); skipped when this wheelhouse already holds them (same pins, Python and machine)
stamp="$(sha256sum docker/constraints.txt | cut -d' ' -f1) ${version} ${arch}"
if grep -qxF "${stamp}" "${dir}/.downloaded" 2>/dev/null; then
    echo "wheelhouse ${dir}: the pinned wheels for Python ${version}, ${arch} are there"
    exit 0
fi
if [ -n "${offline}" ]; then
    echo "wheelhouse ${dir}: the pinned wheels for Python ${version}, ${arch} are not there" \
        "(run scripts/image-wheelhouse.sh with the network)" >&2
    exit 3
fi
grep -v '^#' docker/constraints.txt >"${dir}/.requirements.txt"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "${version}" --platform "manylinux2014_${arch}" \
    --platform "manylinux_2_28_${arch}" --platform "linux_${arch}" \
    --dest "${dir}" -r "${dir}/.requirements.txt" \
    2> >(grep -v "is neither a file nor a directory" >&2)
rm -f "${dir}/.requirements.txt"
echo "${stamp}" >>"${dir}/.downloaded"
echo "wheelhouse ${dir}: $(find "${dir}" -name '*.whl' | wc -l) wheels for Python ${version}, ${arch}"
