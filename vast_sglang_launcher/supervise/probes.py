"""HTTP probes of the server: readiness on ``/ready`` where the release has it (else
``/health``), liveness on ``/health`` (never ``/v1/models``: it answers before ready)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import httpx

from ..loopback import reachable_host
from ..plan.versions import at_least


@dataclass(frozen=True)
class ProbeResult:
    """One probe: healthy only on a 200 answer."""

    ok: bool
    status: int | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.ok:
            return "200 OK"
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.error or "no answer"


READY_FROM = "0.5.20"
"""The first release with `GET /ready` (0.5.20 entrypoints/http_server.py `ready`): 200 once
`TokenizerManager.is_ready()` (started up, not paused, not shutting down), without running a
generation as `/health` does; earlier releases answer it 404."""


def readiness_path(release: str, serves_api: bool) -> str:
    """`/ready` where the release has it, else `/health`; a multi-node rank > 0 serves only
    SGLang's stand-by health server (`launch_dummy_health_check_server`): `/health`."""
    return "/ready" if serves_api and release and at_least(release, READY_FROM) else "/health"


def health_url(host: str, port: int, path: str = "/health") -> str:
    """The URL to probe: a wildcard listen address is probed through loopback."""
    probe_host = reachable_host(host)
    try:
        if ipaddress.ip_address(probe_host).version == 6:
            probe_host = f"[{probe_host}]"
    except ValueError:
        pass
    return f"http://{probe_host}:{port}{path}"


def make_client() -> httpx.AsyncClient:
    """A client for local probes: no proxy from the environment, no kept-alive connections
    (the server closes idle ones between liveness probes, which would fail the next probe)."""
    return httpx.AsyncClient(
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        follow_redirects=False,
    )


async def probe(client: httpx.AsyncClient, url: str, timeout: float) -> ProbeResult:
    """GET ``url`` once; connection refused, timeouts and errors are failed probes."""
    try:
        resp = await client.get(url, timeout=httpx.Timeout(timeout))
    except httpx.ConnectError:
        return ProbeResult(False, error="connection refused")
    except httpx.TimeoutException:
        return ProbeResult(False, error=f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return ProbeResult(False, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
    return ProbeResult(resp.status_code == 200, status=resp.status_code)
