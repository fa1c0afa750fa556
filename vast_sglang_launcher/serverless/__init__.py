"""serverless: Vast Serverless, Vast's worker (the `vastai` package's
`vastai.serverless.server`) in front of the server when SERVERLESS is true.

Owns the worker's configuration from the settings (`worker_config`: the server's address,
sglang.log, the ready line as "loaded", the launcher's give-up line as "error", the routes and
the benchmark; pure), the program that supervisord runs (`program`: the `serverless` command,
which follows sglang.log from this boot on and runs the worker in its own venv) and the worker
itself (`pyworker`: runs in that venv, imports only the standard library and `vastai`), and
serverless's settings part (`knobs`).

May import: the shared top level (settings, errors, logs, rotating_log). Other capabilities
use it only through `program.command_serverless` (the CLI).
"""
