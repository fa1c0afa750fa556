"""Where to reach a server from this machine: a wildcard listen address through loopback."""

from __future__ import annotations

_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def reachable_host(host: str) -> str:
    """``host`` as a client here connects to it: ``0.0.0.0`` (and no host) -> ``127.0.0.1``,
    ``::`` -> ``::1``; any other host as it is."""
    return _WILDCARDS.get(host, host)
