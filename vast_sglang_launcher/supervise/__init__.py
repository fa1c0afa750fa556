"""supervise: keep the planned server serving, and say what it is doing.

Owns the server's process tree (`process`), the `/health` probes (`probes`), the restart
policy (`restart_policy`), hints read from the server's last lines (`failure_hints`), the
server's output (`server_output`, relayed to stdout without ever blocking by
`stdout_relay`), the wait for provisioning (`provisioning_gate`), and:

- `states` / `lifecycle`: the server's state machine and status.json, which mirrors it;
  `status_writer`: writing status.json; `status`: reading it, and the `status` command;
- `run_dir`: the run directory's lock, the server record (server.json) and a leftover
  server's clean-up;
- `control`: the one event queue: signals (handlers only queue; each signal then to one
  handler: stop, hurry, restart) and the server's events (ready line, exit, probe answers);
- `attempt`: one start of the server (start, watch: each event to one handler, take down),
  ending in one `AttemptResult`; `watch`: the watch's concerns alone (startup deadline,
  probe URLs and schedule, liveness count); `stop_budget`: how a stop spends
  LAUNCHER_STOP_TIMEOUT (the gateway's share, then SGLang's own drain);
- `restart_loop`: attempts, backoffs and give-ups as the restart policy says, and restart
  requests answered with a fresh plan; `supervisor`: the steps before the first start;
  `commands`: the `run` and `restart` commands.

May import: the shared top level (settings, errors, files, logs, markers, redact,
rotating_log, pids, timestamps, units, loopback); from the plan, only
`prepare.prepare_plan`, the `build.LaunchPlan` it returns and `versions.at_least` (which
release answers `/ready`); from scaleout, only
`join.gateway_membership` (the observer `attempt.ServerObserver` of READY and of the
moment before the server is taken down); from coldstart, only `gate.wait_for_weights`,
`gate.stop_download` (every stop ends a running prefetch) and `phases.PhaseTracker` (load
phases, stall watchdog).
"""
