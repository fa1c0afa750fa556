"""PORTAL_CONFIG: the ports the image publishes, `host:external:internal:path:name|...`.

Read the way Vast's own portal reads it (vast-ai/base-image a7552d1,
portal-aio/caddy_manager/caddy_config_manager.py, `load_config` and `generate_caddyfile`):
entries split on `|`, each on the first four `:`; an entry whose ports differ is proxied
(external -> internal), an entry whose ports are equal is a *link* that Caddy never serves
(`if external_port == internal_port ...: continue`), and the path is only where the
portal's button opens (README.template.md, "PORTAL_CONFIG": "If the external_port and
local_port are equal then Caddy will not act as a proxy but the Instance Portal UI will
still create links"; "When defining multiple links to a single application, only the first
should have non equal ports"). So Vast's SGLang template, whose
`localhost:8080:8080:/terminals/1:Jupyter Terminal` follows
`localhost:8080:18080:/:Jupyter`, is a second link to the published port 8080.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..settings import DEFAULT_SERVER_PORT, Settings, shown_value

_PORT = re.compile(r"[0-9]{1,5}")


def _default_config(server_port: int) -> str:
    return (
        "localhost:1111:11111:/:Instance Portal"
        f"|localhost:8000:{server_port}:/:SGLang API"
        "|localhost:8080:18080:/:Jupyter"
        "|localhost:8080:8080:/terminals/1:Jupyter Terminal"
    )


DEFAULT_PORTAL_CONFIG = _default_config(DEFAULT_SERVER_PORT)
"""The image's PORTAL_CONFIG with the default LAUNCHER_SERVER_PORT. Jupyter runs on
127.0.0.1:18080 behind the edge on 8080, and its terminal is a link to the same port, as in
Vast's images (vast-ai/base-image ROOT/etc/vast_boot.d/10-prep-env.sh; `jupyter`)."""


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

    @property
    def link(self) -> bool:
        """Entries whose ports are equal are links: the portal shows them, the edge does not
        listen for them (another entry publishes the port, or the service itself does)."""
        return self.external == self.internal


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
    """The image's default PORTAL_CONFIG: the API's 8000 goes to LAUNCHER_SERVER_PORT; in
    gateway mode (LAUNCHER_RUN_GATEWAY) it also publishes the gateway, 8010 ->
    LAUNCHER_GATEWAY_PORT, behind the same authentication."""
    config = _default_config(settings.sglang_port)
    if settings.run_gateway:
        return (
            f"{config}|localhost:{GATEWAY_EXTERNAL_PORT}:{settings.gateway_port}:/:SGLang Gateway"
        )
    return config


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


def published_entries(entries: Sequence[PortalEntry]) -> list[PortalEntry]:
    """The entries the edge serves, one per external port; links are left out. Two entries
    publishing one external port, or an external port that another proxied entry's service
    must listen on, cannot both be bound: a ConfigError naming them."""
    proxied = [e for e in entries if e.proxied]
    internal = {e.internal: e for e in proxied}
    seen: dict[int, PortalEntry] = {}
    for entry in proxied:
        if entry.external in seen:
            raise ConfigError(
                f"PORTAL_CONFIG publishes external port {entry.external} twice "
                f"({seen[entry.external].name!r} and {entry.name!r}); give each entry its "
                "own external port (a second link to a published port has equal ports: "
                f"localhost:{entry.external}:{entry.external}:/path:name)"
            )
        other = internal.get(entry.external)
        if other is not None:
            raise ConfigError(
                f"PORTAL_CONFIG entry {entry.name!r} publishes port {entry.external}, which is "
                f"also the internal port of {other.name!r}; the proxy and that service cannot "
                "both listen on it"
            )
        seen[entry.external] = entry
    return list(seen.values())


def link_entries(entries: Sequence[PortalEntry]) -> list[PortalEntry]:
    """The links (equal ports): shown by the Instance Portal, never served by the edge."""
    return [e for e in entries if e.link]


def link_target(entry: PortalEntry, entries: Sequence[PortalEntry]) -> PortalEntry | None:
    """The proxied entry that publishes a link's port, or None when the service behind the
    link listens on that port itself (Vast: Jupyter in Jupyter launch mode)."""
    for other in published_entries(entries):
        if other.external == entry.external:
            return other
    return None
