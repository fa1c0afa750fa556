"""PORTAL_CONFIG: the ports the image publishes, `host:external:internal:path:name|...`."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_PORTAL_CONFIG = (
    "localhost:1111:11111:/:Instance Portal"
    "|localhost:8000:18000:/:SGLang API"
    "|localhost:8080:8080:/:Jupyter"
)


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
    """Parse PORTAL_CONFIG; a malformed entry is a ConfigError naming it."""
    entries = []
    for raw in text.split("|"):
        item = raw.strip()
        if not item:
            continue
        parts = item.split(":", 4)
        if len(parts) != 5:
            raise ConfigError(
                f"PORTAL_CONFIG entry {item!r} is not host:external:internal:path:name"
            )
        host, ext, internal, path, name = parts
        try:
            ports = int(ext), int(internal)
        except ValueError:
            raise ConfigError(
                f"PORTAL_CONFIG entry {item!r} has a port that is not a number"
            ) from None
        if not all(1 <= p <= 65535 for p in ports):
            raise ConfigError(f"PORTAL_CONFIG entry {item!r} has a port outside 1-65535")
        entries.append(PortalEntry(host or "localhost", ports[0], ports[1], path or "/", name))
    return entries
