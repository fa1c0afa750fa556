"""supervise: keep the planned server serving, and say what it is doing.

Owns the server's process tree (`process`), the `/health` probes (`probes`), the restart
policy (`restart_policy`), hints read from the server's last lines (`failure_hints`), the
server's output (`server_output`), status.json and the `status` command (`status`), the wait
for provisioning (`provisioning_gate`), the run directory's claim (`run_dir`), the server's
life cycle (`lifecycle`), one start of the server (`attempt`), the restart loop
(`supervisor`) and the `run` / `restart` commands (`commands`).

May import: the shared top level (settings, errors, files, logs, markers) and, from the plan,
only `prepare_plan` and `LaunchPlan`.
"""
