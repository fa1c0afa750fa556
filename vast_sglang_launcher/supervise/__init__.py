"""supervise: keep the planned server serving, and say what it is doing.

Owns the server's process tree (`process`), the `/health` probes (`probes`), the restart
policy (`restart_policy`), hints read from the server's last lines (`failure_hints`), the
server's output (`server_output`, relayed to stdout without ever blocking by
`stdout_relay`), the wait for provisioning (`provisioning_gate`), and:

- `states` / `lifecycle`: the server's state machine and status.json, which mirrors it;
  `status`: reading status.json, and the `status` command;
- `run_dir`: the run directory's lock, the server record and a leftover server's clean-up;
- `control`: signals turned into requests (stop, hurry, restart), and the wake-up event;
- `attempt`: one start of the server (start, watch, take down); `stop_budget`: how a stop
  spends LAUNCHER_STOP_TIMEOUT (the gateway's share, then SGLang's own drain);
- `supervisor`: the restart loop; `commands`: the `run` and `restart` commands.

May import: the shared top level (settings, errors, files, logs, markers, redact,
rotating_log); from the plan, only `prepare.prepare_plan`, the `build.LaunchPlan` it
returns and `versions.at_least` (which release answers `/ready`); from scaleout, only
`join.gateway_membership` (the observer `attempt.ServerObserver` of READY and of the
moment before the server is taken down); from coldstart, only `gate.wait_for_weights`,
`gate.stop_download` (every stop ends a running prefetch) and `phases.PhaseTracker` (load
phases, stall watchdog).
"""
