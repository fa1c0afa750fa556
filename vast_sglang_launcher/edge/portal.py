"""PORTAL_CONFIG: the ports the image publishes, `host:external:internal:path:name|...`."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..settings import Settings, shown_value

_PORT = re.compile(r"[0-9]{1,5}")

DEFAULT_PORTAL_CONFIG = (
    "localhost:1111:11111:/:Instance Portal"
    "|localhost:8000:18000:/:SGLang API"
    "|localhost:8080:18080:/:Jupyter"
)
"""Jupyter runs on 127.0.0.1:18080 behind the edge on 8080, as in Vast's images (`jupyter`)."""


@dataclass(frozen=True)
class PortalEntry:
    host: str
    external: int
    internal: int
    path: str
    name: str

    @property
    def proxied(self) -> bool:
        """Entries whose ports differ are served by the edge on the external port."""
        return self.external != self.internal


def parse_portal_config(text: str) -> list[PortalEntry]:
    """Parse PORTAL_CONFIG; a malformed entry is a ConfigError naming it. Ports are ASCII
    digits (no `28_000`, no other scripts' digits) in 1-65535."""
    entries = []
    for raw in text.split("|"):
        item = raw.strip()
        if not item:
            continue
        shown = shown_value(item)
        parts = item.split(":", 4)
        if len(parts) != 5:
            raise ConfigError(
                f"PORTAL_CONFIG entry {shown} is not host:external:internal:path:name; "
                "fix or unset PORTAL_CONFIG"
            )
        host, ext, internal, path, name = parts
        if not (_PORT.fullmatch(ext.strip()) and _PORT.fullmatch(internal.strip())):
            raise ConfigError(
                f"PORTAL_CONFIG entry {shown} has a port that is not a number written with "
                "the ASCII digits 0-9; fix or unset PORTAL_CONFIG"
            )
        ports = int(ext), int(internal)
        if not all(1 <= p <= 65535 for p in ports):
            raise ConfigError(
                f"PORTAL_CONFIG entry {shown} has a port outside 1-65535; fix or unset "
                "PORTAL_CONFIG"
            )
        entries.append(PortalEntry(host or "localhost", ports[0], ports[1], path or "/", name))
    return entries


GATEWAY_EXTERNAL_PORT = 8010
"""Where the edge publishes SGLang's gateway in gateway mode (scaleout)."""


def default_portal_config(settings: Settings) -> str:
    """The image's default PORTAL_CONFIG; in gateway mode (LAUNCHER_RUN_GATEWAY) it also
    publishes the gateway, 8010 -> LAUNCHER_GATEWAY_PORT, behind the same authentication."""
    if settings.run_gateway:
        return (
            f"{DEFAULT_PORTAL_CONFIG}|localhost:{GATEWAY_EXTERNAL_PORT}:"
            f"{settings.gateway_port}:/:SGLang Gateway"
        )
    return DEFAULT_PORTAL_CONFIG


def portal_entries(settings: Settings) -> list[PortalEntry]:
    """The entries of PORTAL_CONFIG, or of the image's default when it is unset."""
    return parse_portal_config(settings.portal_config or default_portal_config(settings))


def portal_yaml_text(entries: Sequence[PortalEntry]) -> str:
    """The Instance Portal's application list (JSON, which is valid YAML)."""
    apps = {
        e.name: {
            "hostname": e.host,
            "external_port": e.external,
            "internal_port": e.internal,
            "open_path": e.path,
            "name": e.name,
        }
        for e in entries
    }
    return json.dumps({"applications": apps}, indent=2) + "\n"
