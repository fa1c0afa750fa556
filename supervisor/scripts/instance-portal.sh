#!/usr/bin/env bash
# Runs Vast's Instance Portal on 127.0.0.1:11111 (published on 1111 by the auth edge) when the
# image has it; exits 0 when it does not, so supervisord leaves the program EXITED.
# The portal reads its application list from /etc/portal.yaml, which `edge` writes.
set -u
SERVERLESS="${SERVERLESS:-}"

portal_dir="${PORTAL_DIR:-/opt/portal-aio}"
fastapi="${portal_dir}/venv/bin/fastapi"

# Vast's image skips the portal in serverless mode (base-image
# opt/supervisor-scripts/instance_portal.sh sources utils/exit_serverless.sh).
if [[ "${SERVERLESS,,}" == "true" ]]; then
    echo "instance portal: serverless mode (SERVERLESS); not starting"
    exit 0
fi

if [[ ! -x "${fastapi}" || ! -f "${portal_dir}/portal/portal.py" ]]; then
    echo "instance portal: not installed in this image (${portal_dir}); not starting"
    exit 0
fi

cd "${portal_dir}/portal" || exit 1
# stopped by supervisord: pass the signal on, wait for the portal, and report a clean stop.
# Set before the portal starts: a stop right after the start is a clean stop too.
child=
trap 'if [[ -n "${child}" ]]; then kill -TERM "${child}" 2>/dev/null; wait "${child}"; fi; exit 0' TERM INT
"${fastapi}" run --host 127.0.0.1 --port "${PORTAL_PORT:-11111}" portal.py 2>&1 &
child=$!
wait "${child}"
status=$?
if [[ ${status} -ne 0 ]]; then
    # a crash: wait a little so supervisord does not restart the portal in a tight loop
    echo "instance portal: exited with status ${status}; restarting in 5 s"
    sleep 5
fi
exit "${status}"
