#!/usr/bin/env bash
# The downloads the image test (tests/image) needs, made before the test session, which runs
# in a private network namespace with no network (tests/conftest.py): the Debian root of the
# stand-in SGLang base (debootstrap, from the mirror this machine's apt uses) and the wheels
# docker/constraints.txt pins (scripts/image-wheelhouse.sh), both cached under build/.
# .ci/run runs it; by hand, run it once before `pytest tests/image` (as root).
#   scripts/image-test-inputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 tests/image/image_rig.py
