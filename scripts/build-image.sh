#!/usr/bin/env bash
# Builds the image on the real bases (where a registry and Docker or podman are available)
# and, with --check, boots it and checks it as tests/image does on stand-in bases.
#
#   SGLANG_BASE=lmsysorg/sglang:v0.5.6.post2 scripts/build-image.sh [--check]
#
# Environment (all optional):
#   SGLANG_BASE   SGLang image to build on        (default lmsysorg/sglang:v0.5.6.post2)
#   VAST_BASE     Vast base image (Caddy, portal) (default vastai/base-image:stock-ubuntu24.04-py312)
#   SGLANG_PYTHON SGLang's Python in SGLANG_BASE  (default python3)
#   TAG           the image's name                (default vast-sglang:latest)
#   ENGINE        docker or podman                (default: docker if on PATH, else podman)
#   CHECK_MODEL   with --check: also serve this model (needs GPUs: --gpus all), wait until
#                 `status` is ready and stream a chat completion through the edge
#
# The wheels are downloaded on this machine first (scripts/image-wheelhouse.sh, for the
# base's Python and architecture, at the versions of docker/constraints.txt): the build
# itself installs with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
--check) check=true ;;
"") ;;
*)
    echo "usage: scripts/build-image.sh [--check]" >&2
    exit 2
    ;;
esac
sglang_base="${SGLANG_BASE:-lmsysorg/sglang:v0.5.6.post2}"
vast_base="${VAST_BASE:-vastai/base-image:stock-ubuntu24.04-py312}"
python="${SGLANG_PYTHON:-python3}"
tag="${TAG:-vast-sglang:latest}"
engine="${ENGINE:-$(command -v docker >/dev/null 2>&1 && echo docker || echo podman)}"

# The base's Python and machine decide which wheels the build needs.
read -r version arch < <("${engine}" run --rm --entrypoint "${python}" "${sglang_base}" -c \
    'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine())')
if [[ -z "${version:-}" || -z "${arch:-}" ]]; then
    echo "build-image: cannot run ${python} in ${sglang_base} (set SGLANG_PYTHON?)" >&2
    exit 1
fi
scripts/image-wheelhouse.sh build/wheelhouse "${version}" "${arch}"

format=()
# buildah/podman keep HEALTHCHECK only in the docker format (the OCI format drops it)
[[ "${engine}" == podman ]] && format=(--format docker)
started=$(date +%s)
"${engine}" build "${format[@]}" -f docker/Dockerfile -t "${tag}" \
    --build-arg SGLANG_BASE="${sglang_base}" --build-arg VAST_BASE="${vast_base}" \
    --build-arg SGLANG_PYTHON="${python}" --build-arg WHEELHOUSE=build/wheelhouse .
echo "built ${tag} on ${sglang_base} (Python ${version}, ${arch}) in $(($(date +%s) - started)) s"
"${engine}" image inspect --format '{{json .Config.Healthcheck}}' "${tag}" | grep -q status || {
    echo "build-image: ${tag} has no HEALTHCHECK" >&2
    exit 1
}
"${check}" || exit 0

# --- boot it and check it as a user would ------------------------------------------------
name="vast-sglang-check-$$"
token="check-$$-${RANDOM}"
run=(--detach --name "${name}" --env OPEN_BUTTON_TOKEN="${token}")
# without a model the launcher has nothing to serve: `sglang` ends EXITED (exit 0) at once
programs=(services:caddy)
if [[ -n "${CHECK_MODEL:-}" ]]; then
    run+=(--gpus all --shm-size 16g --env SGLANG_MODEL="${CHECK_MODEL}")
    programs=(sglang services:caddy)
fi
trap '"${engine}" rm --force "${name}" >/dev/null 2>&1 || true' EXIT
"${engine}" run "${run[@]}" "${tag}" >/dev/null
in_container() { "${engine}" exec "${name}" "$@"; }
fail() {
    echo "build-image --check: $*" >&2
    "${engine}" logs --tail 60 "${name}" >&2 || true
    exit 1
}

for _ in $(seq 120); do
    in_container supervisorctl status services:caddy 2>/dev/null | grep -q RUNNING && break
    sleep 1
done
grep -q supervisord <(in_container cat /proc/1/cmdline) || fail "PID 1 is not supervisord"
in_container supervisorctl status "${programs[@]}" || fail "${programs[*]}: not RUNNING"
client=/opt/vast-sglang-launcher/venv/bin/python
code=$(in_container "${client}" -c \
    'import httpx; print(httpx.get("http://127.0.0.1:8000/v1/models").status_code)')
[[ "${code}" == 401 ]] || fail "port 8000 without the token answered ${code}, not 401"
if [[ -n "${CHECK_MODEL:-}" ]]; then
    timeout 3600 bash -c "until ${engine} exec ${name} vast-sglang-launcher status >/dev/null; do sleep 5; done" ||
        fail "the server did not become ready within an hour"
    in_container "${client}" - "${token}" "${CHECK_MODEL}" <<'PY' || fail "no streamed chat completion through the edge"
import sys

import httpx

token, model = sys.argv[1], sys.argv[2]
body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "Say hi"}]}
with httpx.stream(
    "POST", "http://127.0.0.1:8000/v1/chat/completions", json=body, timeout=120,
    headers={"Authorization": f"Bearer {token}"},
) as r:
    r.raise_for_status()
    events = [line for line in r.iter_lines() if line.startswith("data: ")]
assert events and events[-1] == "data: [DONE]", events
print(f"streamed {len(events)} events through the edge")
PY
    "${engine}" healthcheck run "${name}" 2>/dev/null ||
        in_container /opt/vast-sglang-launcher/venv/bin/python -m vast_sglang_launcher status ||
        fail "the HEALTHCHECK command fails on a ready server"
fi
started=$(date +%s)
"${engine}" stop --time 10 "${name}" >/dev/null
took=$(($(date +%s) - started))
status=$("${engine}" inspect --format '{{.State.ExitCode}}' "${name}")
[[ "${status}" == 0 ]] || fail "stop: exit status ${status} (137: something was SIGKILLed)"
if "${engine}" logs "${name}" 2>&1 | grep -q SIGKILL; then fail "stop: supervisord had to SIGKILL"; fi
echo "stopped in ${took} s with exit status 0"
"${engine}" start "${name}" >/dev/null
for _ in $(seq 120); do
    in_container supervisorctl status services:caddy 2>/dev/null | grep -q RUNNING && break
    sleep 1
done
in_container supervisorctl status "${programs[@]}" || fail "second start: not RUNNING"
"${engine}" stop --time 10 "${name}" >/dev/null
echo "build-image --check: ${tag} boots, serves, stops and starts again"
