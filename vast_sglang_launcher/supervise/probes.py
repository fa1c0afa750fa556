"""HTTP probes of the server's ``/health`` (never ``/v1/models``: it answers before ready)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import httpx


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


def health_url(host: str, port: int, path: str = "/health") -> str:
    """The URL to probe: a wildcard listen address is probed through loopback."""
    probe_host = host or "127.0.0.1"
    if probe_host == "0.0.0.0":
        probe_host = "127.0.0.1"
    elif probe_host == "::":
        probe_host = "::1"
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
