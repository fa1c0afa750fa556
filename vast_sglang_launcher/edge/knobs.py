"""The edge's settings part (`edge`): published ports and authentication.

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..knob_types import Bool, Int, Line, SafePath, Secret, parse_ports


class EdgeKnobs(BaseModel):
    """The edge's knobs."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

    portal_config: str | None = Field(None, validation_alias="PORTAL_CONFIG")
    """Published ports, `host:external:internal:path:name|...`; default publishes the SGLang
    API 8000->18000, the Instance Portal 1111->11111 and Jupyter 8080->18080 (and the gateway
    8010->18010 when `LAUNCHER_RUN_GATEWAY` is true)."""

    open_button_token: Secret | None = Field(None, validation_alias="OPEN_BUTTON_TOKEN")
    """Token accepted as `Authorization: Bearer`, as a `?token=` link, and as the default
    Basic password."""

    web_username: Line = Field("vastai", validation_alias="WEB_USERNAME")
    """User name for HTTP Basic authentication."""

    web_password: Secret | None = Field(None, validation_alias="WEB_PASSWORD")
    """Password for HTTP Basic authentication; default `OPEN_BUTTON_TOKEN`."""

    enable_auth: Bool = Field(True, validation_alias="ENABLE_AUTH")
    """Require authentication on every published port."""

    auth_exclude: str = Field("", validation_alias="AUTH_EXCLUDE")
    """External ports served without authentication (comma or space separated)."""

    auth_link_login: Bool = Field(True, validation_alias="AUTH_LINK_LOGIN")
    """Accept `?token=` links and the cookie a link sets. `false`: only `Authorization`
    (Bearer or Basic) gets in; no cookie is set or accepted."""

    auth_cookie_max_age: Int = Field(
        12 * 3600, ge=60, le=30 * 24 * 3600, validation_alias="AUTH_COOKIE_MAX_AGE"
    )
    """Seconds a browser keeps the cookie that a token link sets (60 to 2592000)."""

    enable_https: Bool = Field(False, validation_alias="ENABLE_HTTPS")
    """Serve the published ports over TLS with `LAUNCHER_TLS_CERT` and `LAUNCHER_TLS_KEY`."""

    tls_cert: SafePath = Field(Path("/etc/instance.crt"), validation_alias="LAUNCHER_TLS_CERT")
    """TLS certificate used when `ENABLE_HTTPS` is true."""

    tls_key: SafePath = Field(Path("/etc/instance.key"), validation_alias="LAUNCHER_TLS_KEY")
    """TLS private key used when `ENABLE_HTTPS` is true."""

    caddy_bin: Line = Field("caddy", validation_alias="LAUNCHER_CADDY_BIN")
    """Caddy executable that `edge` runs."""

    portal_yaml: SafePath = Field(Path("/etc/portal.yaml"), validation_alias="LAUNCHER_PORTAL_YAML")
    """Application list of the Instance Portal, written by `edge` from `PORTAL_CONFIG` on every
    start (the portal waits for this file)."""

    @field_validator("auth_exclude")
    @classmethod
    def _auth_exclude_ports(cls, value: str) -> str:
        parse_ports(value)
        return value

    @field_validator("web_username")
    @classmethod
    def _basic_user_name(cls, value: str) -> str:
        # RFC 7617 section 2: a user-id containing a colon is invalid (the client sends
        # user-id:password, split at the first colon). Checked here, so that every command
        # refuses it when the settings load, not only `edge` when it renders the Caddyfile.
        if ":" in value:
            raise ValueError("HTTP Basic user names cannot contain ':'")
        return value

    @property
    def auth_exclude_ports(self) -> frozenset[int]:
        """The external ports listed in AUTH_EXCLUDE."""
        return parse_ports(self.auth_exclude)
