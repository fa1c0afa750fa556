"""scaleout: several instances behind SGLang's own gateway (the Shepherd Model Gateway, `smg`
on PyPI; its predecessor `sglang-router` speaks the same worker API).

Owns worker mode, joining a gateway: the gateway's worker API (`gateway_api`), the
registration that follows the server's life (`membership`: register once ready, retry with
backoff while the gateway is down, deregister and wait until no longer listed before every
stop or restart) and its construction from the settings (`join`); and gateway mode, running
the gateway in this image (`gateway_program`: the `gateway` command that supervisord runs);
and scaleout's settings part (`knobs`).

May import: the shared top level (settings, errors, logs, words). Other capabilities use it
only through `join.gateway_membership` (supervise: an observer of the server's READY and of
the moment before it is taken down) and `gateway_program.command_gateway` (the CLI).
"""
