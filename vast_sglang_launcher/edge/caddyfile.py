"""The Caddyfile of the authenticating reverse proxy in front of the published ports.

`render_caddyfile` is a pure function from the settings and the `PORTAL_CONFIG` entries to
the Caddyfile text; `edge.command` writes it (mode 0600: it holds the token) and execs Caddy.

Every entry whose external port differs from its internal one is served on the external
port and proxied to 127.0.0.1:internal. On a port that requires authentication a request
is let through when it carries one of:

- `Authorization: Bearer $OPEN_BUTTON_TOKEN`;
- HTTP Basic with `WEB_USERNAME` and `WEB_PASSWORD` (default: the token);
- the cookie set by a token link (its name and value are hashes of the token, so two
  instances on one host do not overwrite each other's cookie, the browser never stores the
  token itself, and the cookie's value is not accepted as a token); `__Host-` prefixed and
  `Secure` under HTTPS; kept `AUTH_COOKIE_MAX_AGE` seconds by the browser;
- `?token=$OPEN_BUTTON_TOKEN`. A browser navigation (GET or HEAD asking for HTML) with it
  is answered with the cookie and a redirect to the same URL without the token; any other
  request with it (an API client, the console's probe) is served directly, with every
  `token` query parameter removed first, so the token reaches neither the service nor a log.

`AUTH_LINK_LOGIN=false` turns the last two off: only the `Authorization` header gets in.

Anything else gets 401 with `WWW-Authenticate: Basic`. One exception: in worker mode
(`LAUNCHER_GATEWAY_URL` set) `GET /health` on the SGLang API's port passes without
credentials, because SGLang's gateway probes a worker's `/health` without its API key (as
SGLang's own `--api-key` lets `/health` through). Credentials are compared exactly:
Caddyfile matchers have no constant-time comparison.

User-provided text reaches the Caddyfile through one path only: `regex_literal`, a regular
expression in which every character but [A-Za-z0-9] is a hex escape, so quotes, spaces,
braces, `$`, `#`, newlines or regex metacharacters cannot change its meaning (the TLS paths
are quoted, and refused when they hold a character that quoting cannot neutralise). Entry
names, hosts and paths of PORTAL_CONFIG never reach it, not even in comments; ports are
integers. Caddy runs with a minimal environment (`command.caddy_environment`), so a `{$VAR}`
could not read the launcher's secrets even if one slipped through.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..settings import Settings, shown_value
from ..supervise.status import SERVING_MARKER
from .portal import PortalEntry, published_entries

LOADING_SOCKET = "loading.sock"
"""The loading page's Unix socket in LAUNCHER_RUN_DIR (edge.loading_server listens on it)."""

UPSTREAM_HOST = "127.0.0.1"
COOKIE_PREFIX = "vast_sglang_auth_"
HOST_COOKIE_PREFIX = "__Host-"
"""Under HTTPS: the browser accepts the cookie only with Secure, Path=/ and no Domain."""
TOKEN_PASSES = 3
"""`token` query parameters removed from one request; a request with more gets 400."""
REALM = "vast-sglang"
GRACE_PERIOD = "10s"
"""How long Caddy lets open requests finish after SIGTERM before it closes them."""
REQUEST_BUFFER = "1GiB"
"""How much of a request body the proxy reads before it sends the request upstream.

Without it, a POST can lose its response: "for HTTP/1 requests, the Go HTTP server by default
consumes any unread portion of the request body before beginning to write the response"
(Caddy's modules/caddyhttp/server.go, EnableFullDuplex, an option only from v2.7.0), while
the upstream transport may still be reading that body; the transport then drops the
upstream connection ("reading from backend: use of closed network connection") and the
client gets the header and no body (Caddy v2.6.2 reverseproxy.go, finalizeResponse: "aborting
with incomplete response"; caddyserver/caddy issue 5431). A buffered body (v2.6.2
reverseproxy.go, prepareRequest and bufferedBody: read whole, the original closed) is read
from memory instead. Caddy before v2.6.4 spells it `buffer_requests` (the whole body), later
ones `request_buffers SIZE` (v2.8.0 dropped `buffer_requests`; caddyfile.go of each tag)."""
REQUEST_BUFFERS_SINCE = (2, 6, 4)

UNAUTHORIZED_BODY = (
    "401 Unauthorized: send Authorization: Bearer with the instance token, "
    "HTTP Basic credentials, or open a link with ?token="
)
UNAVAILABLE_STATUSES = (502, 503, 504)
"""What Caddy's reverse_proxy answers when the service is not there: 502 (nothing listens,
connection refused), 503 (no upstream available), 504 (it listens but does not answer).
The same three that Vast's edge turns into its loading page (vast-ai/base-image a7552d1,
portal-aio/caddy_manager/caddy_config_manager.py, `get_not_ready_handler_block`)."""


def unavailable_body(entry: PortalEntry) -> str:
    """The page of a published port whose service does not answer (ports only: entry names
    never reach the Caddyfile)."""
    return (
        f"Service unavailable: nothing answers behind port {entry.external} "
        f"(127.0.0.1:{entry.internal}): the service is still starting, or it does not run "
        "in this container. Check: supervisorctl status; the logs in /var/log/portal/"
    )


FAIL_CLOSED_BODY = (
    "401 Unauthorized: ENABLE_AUTH is on but neither OPEN_BUTTON_TOKEN nor WEB_PASSWORD "
    "is set, so the auth proxy refuses every request; set OPEN_BUTTON_TOKEN or "
    "ENABLE_AUTH=false"
)


@dataclass(frozen=True)
class Credentials:
    """What the edge accepts; `None` when that kind of credential is not configured."""

    token: str | None
    username: str
    password: str | None

    @property
    def configured(self) -> bool:
        return self.token is not None or self.password is not None


def credentials(settings: Settings) -> Credentials:
    """The token, and the Basic user and password (the password defaults to the token; the
    user name holds no ':', which the settings refuse when they load)."""
    token = settings.open_button_token.get_secret_value() if settings.open_button_token else None
    password = settings.web_password.get_secret_value() if settings.web_password else token
    return Credentials(token=token, username=settings.web_username, password=password)


def auth_cookie(token: str, https: bool = False) -> tuple[str, str]:
    """Name and value of the cookie a token link sets: hashes of the token (hex only), so the
    value cannot be used as the token; `__Host-` prefixed under HTTPS."""
    digest = hashlib.sha256(b"vast-sglang-launcher edge cookie\0" + token.encode()).hexdigest()
    prefix = HOST_COOKIE_PREFIX if https else ""
    return prefix + COOKIE_PREFIX + digest[:12], digest


def excluded_ports(settings: Settings) -> frozenset[int]:
    """External ports listed in AUTH_EXCLUDE (checked strictly when the settings load)."""
    return settings.auth_exclude_ports


def proxied_entries(entries: Sequence[PortalEntry]) -> list[PortalEntry]:
    """Entries the edge serves (`portal.published_entries`); a port that cannot be bound
    twice is a ConfigError."""
    return published_entries(entries)


# --- Caddyfile text ------------------------------------------------------------------------


def regex_literal(text: str) -> str:
    """A Go (RE2) regular expression matching exactly `text`, safe as one Caddyfile token.

    Only [A-Za-z0-9] stay as they are; everything else becomes `\\xHH` (or `\\x{H...}`
    beyond ASCII), so the result has no whitespace, quotes, `#`, `{$` or metacharacters.
    """
    out = []
    for ch in text:
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\x{{{ord(ch):x}}}")
    return "".join(out)


_QUOTABLE = re.compile(r'[^"\\{}`\x00-\x1f\x7f]*')


def _quoted(text: str, what: str) -> str:
    """`text` as one double-quoted Caddyfile token; refuses what it cannot write safely."""
    if not _QUOTABLE.fullmatch(text):
        raise ConfigError(
            f"{what}={shown_value(text)} is not valid: it contains a quote, backslash, brace or "
            f"control character that the proxy configuration cannot hold; fix {what}"
        )
    return f'"{text}"'


# The `token` query key as Go's url.ParseQuery reads it: every letter may be percent-encoded.
_TOKEN_KEY = "(?:t|%74)(?:o|%6[fF])(?:k|%6[bB])(?:e|%65)(?:n|%6[eE])"


def _strip_token_lines(indent: str) -> list[str]:
    """Remove every `token` query parameter (up to TOKEN_PASSES) before the request is
    proxied or logged; more of them is refused with 400."""
    lines = [
        f"{indent}@edge_token_param vars_regexp {{http.request.uri.query}} "
        f"(?:^|&){_TOKEN_KEY}(?:=|&|$)",
    ]
    for n in range(1, TOKEN_PASSES + 1):
        lines += [
            f"{indent}route @edge_token_param {{",
            f"{indent}\tmap {{http.request.uri.query}} {{edge_token_pair{n}}} {{",
            f'{indent}\t\t~^({_TOKEN_KEY}(?:=[^&]*)?(?:&|$)) "${{1}}"',
            f'{indent}\t\t~(&{_TOKEN_KEY}(?:=[^&]*)?)(?:&|$) "${{1}}"',
            f"{indent}\t}}",
            f'{indent}\turi replace {{edge_token_pair{n}}} ""',
            f"{indent}}}",
        ]
    body = f"400 Bad Request: more than {TOKEN_PASSES} token parameters"
    lines.append(f"{indent}respond @edge_token_param {_quoted(body, 'body')} 400")
    return lines


def parse_caddy_version(text: str) -> tuple[int, int, int] | None:
    """`caddy version`'s answer ("v2.6.2", "v2.7.6 h1:...") as numbers; None when unreadable."""
    match = re.match(r"\s*v?(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _request_buffer_line(caddy_version: tuple[int, int, int] | None) -> str:
    """See REQUEST_BUFFER; an unknown version gets the current spelling."""
    if caddy_version is not None and caddy_version < REQUEST_BUFFERS_SINCE:
        return "buffer_requests"
    return f"request_buffers {REQUEST_BUFFER}"


def _proxy_lines(
    entry: PortalEntry, indent: str, caddy_version: tuple[int, int, int] | None
) -> list[str]:
    return [
        f"{indent}reverse_proxy {UPSTREAM_HOST}:{entry.internal} {{",
        f"{indent}\t# stream responses (server-sent events) as they come",
        f"{indent}\tflush_interval -1",
        f"{indent}\t# read the request body first: a POST keeps its response (REQUEST_BUFFER)",
        f"{indent}\t{_request_buffer_line(caddy_version)}",
        f"{indent}}}",
    ]


def _sglang_lines(
    entry: PortalEntry,
    run_dir: Path | None,
    indent: str,
    caddy_version: tuple[int, int, int] | None,
) -> list[str]:
    """The SGLang API's proxy: while the status writer's serving marker is missing, the
    request goes to the loading page's handler (edge.loading_server says why it is a
    handler and not Caddy templates), else to SGLang untouched. The `file` matcher (Caddy
    2.6.2 modules/caddyhttp/fileserver/matcher.go, `MatchFile`: root + try_files, one stat)
    is all a ready server's request pays; reverse_proxy is terminal, so the second one runs
    only when the first did not match."""
    if run_dir is None:
        return _proxy_lines(entry, indent, caddy_version)
    return [
        f"{indent}# SGLang not serving yet: the loading page's handler answers (503)",
        f"{indent}@edge_not_serving {{",
        f"{indent}\tnot file {{",
        f"{indent}\t\troot {_quoted(str(run_dir), 'LAUNCHER_RUN_DIR')}",
        f"{indent}\t\ttry_files /{SERVING_MARKER}",
        f"{indent}\t}}",
        f"{indent}}}",
        f"{indent}reverse_proxy @edge_not_serving {_loading_upstream(run_dir)}",
        *_proxy_lines(entry, indent, caddy_version),
    ]


def _loading_upstream(run_dir: Path) -> str:
    return _quoted(f"unix/{run_dir / LOADING_SOCKET}", "LAUNCHER_RUN_DIR")


def _loading_error_lines(run_dir: Path) -> list[str]:
    """A proxy that cannot reach SGLang (it died since the marker was written, or a launcher
    killed before it could remove it): reverse_proxy's dial error (502) is handled by the
    loading page too, never Caddy's bare 502. `handle_errors` runs only for errors a handler
    returns (Caddy 2.6.2 modules/caddyhttp/server.go, `Server.ServeHTTP`, the Errors
    routes; reverseproxy.go `statusError`); a 502 that SGLang itself sends passes as it is."""
    return [
        "\t# SGLang unreachable: the loading page's handler answers (503), not a bare 502",
        "\thandle_errors {",
        f"\t\treverse_proxy {_loading_upstream(run_dir)}",
        "\t}",
    ]


def unavailable_lines(entry: PortalEntry, indent: str = "\t") -> list[str]:
    """The site's error handler: a service that is down (or not started yet) is answered
    with a page that says so (`unavailable_body`), with the proxy's own status, instead of
    an empty 502. Never cached; the request's `?token=` has already been removed."""
    low, high = min(UNAVAILABLE_STATUSES), max(UNAVAILABLE_STATUSES)
    return [
        f"{indent}# the service does not answer (not running, or still starting)",
        f"{indent}handle_errors {{",
        f"{indent}\t@edge_unavailable expression `{{err.status_code}} >= {low} && "
        f"{{err.status_code}} <= {high}`",
        f"{indent}\thandle @edge_unavailable {{",
        f'{indent}\t\theader Content-Type "text/plain; charset=utf-8"',
        f"{indent}\t\theader Cache-Control no-store",
        f"{indent}\t\trespond {_quoted(unavailable_body(entry), 'body')} {{err.status_code}}",
        f"{indent}\t}}",
        f"{indent}}}",
    ]


GATEWAY_PROBE = "/health"
"""The path SGLang's gateway probes on a worker: `health_check_endpoint = "/health"` in
smg 1.13.0 smg/router_args.py (RouterArgs) and sglang-router 0.3.2 router_args.py."""


def _gateway_probe_lines(
    entry: PortalEntry, caddy_version: tuple[int, int, int] | None
) -> list[str]:
    """Worker mode: the gateway's `/health` probe carries no token (scaleout).

    Matched on the request's raw URI, byte for byte, not with the `path` matcher: Caddy
    2.6's `path` (modules/caddyhttp/matchers.go, MatchPath.Match) lower-cases, unescapes and
    cleans the path (`CleanPath`: dot segments, doubled slashes) before comparing, while
    `reverse_proxy` forwards the raw URI, so `/v1/models/../../health` or `/HEALTH` would
    pass without a token and reach other handlers. `{http.request.orig_uri}` is the URI as
    the client sent it (replacer.go: the original request's RequestURI), query included, so
    only exactly `GET /health` passes, and it is forwarded as matched (no `?token=` to strip).
    """
    return [
        "\t# worker mode (LAUNCHER_GATEWAY_URL): the gateway probes /health without a token;",
        "\t# only that exact raw URI (no query, no dot segment, no escape, this case)",
        "\t@edge_gateway_probe {",
        "\t\tmethod GET",
        f"\t\tvars_regexp {{http.request.orig_uri}} ^{regex_literal(GATEWAY_PROBE)}$",
        "\t}",
        "\thandle @edge_gateway_probe {",
        *_proxy_lines(entry, "\t\t", caddy_version),
        "\t}",
    ]


def _auth_lines(
    creds: Credentials,
    entry: PortalEntry,
    https: bool,
    links: bool,
    max_age: int,
    caddy_version: tuple[int, int, int] | None,
    loading: Path | None = None,
) -> list[str]:
    if not creds.configured:
        return [f"\trespond {_quoted(FAIL_CLOSED_BODY, 'body')} 401"]
    schemes = []
    if creds.token is not None:
        schemes.append(f"(?i:bearer)\\x20{regex_literal(creds.token)}")
    if creds.password is not None:
        basic = f"{creds.username}:{creds.password}".encode()
        schemes.append(f"(?i:basic)\\x20{regex_literal(base64.b64encode(basic).decode())}")
    lines = []
    link_lines: list[str] = []
    denied = [f"\t\tnot header_regexp Authorization ^(?:{'|'.join(schemes)})$"]
    if creds.token is not None and links:
        token_re = f"^{regex_literal(creds.token)}$"
        name, value = auth_cookie(creds.token, https)
        cookie = f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        if https:
            cookie += "; Secure"
        denied += [
            f"\t\tnot header_regexp Cookie (?:^|;\\x20*){name}={value}(?:;|$)",
            f"\t\tnot vars_regexp {{http.request.uri.query.token}} {token_re}",
        ]
        lines += [
            "\t# a browser opening a ?token= link: set the cookie, drop the token from the URL",
            "\t@edge_token_link {",
            "\t\tmethod GET HEAD",
            '\t\texpression `{http.request.header.Accept}.contains("text/html") || '
            '{http.request.header.Sec-Fetch-Dest} == "document"`',
            f"\t\tvars_regexp {{http.request.uri.query.token}} {token_re}",
            "\t}",
        ]
        link_lines = [
            "\thandle @edge_token_link {",
            "\t\troute {",
            "\t\t\tmap {http.request.uri} {edge_location} {",
            '\t\t\t\t~^/*(/[^?]*)\\?token=[^&]*$ "${1}"',
            '\t\t\t\t~^/*(/[^?]*)\\?token=[^&]*&(.*)$ "${1}?${2}"',
            '\t\t\t\t~^/*(/[^?]*\\?.*?)&token=[^&]*(.*)$ "${1}${2}"',
            "\t\t\t\tdefault /",
            "\t\t\t}",
            f"\t\t\theader Set-Cookie {_quoted(cookie, 'cookie')}",
            "\t\t\tredir {edge_location} 302",
            "\t\t}",
            "\t}",
        ]
    lines += ["\t@edge_denied {", *denied, "\t}", *link_lines]
    lines += [
        "\thandle @edge_denied {",
        f'\t\theader WWW-Authenticate "Basic realm=\\"{REALM}\\", charset=\\"UTF-8\\""',
        f"\t\trespond {_quoted(UNAUTHORIZED_BODY, 'body')} 401",
        "\t}",
        "\thandle {",
        "\t\troute {",
        *_strip_token_lines("\t\t\t"),
        *_sglang_lines(entry, loading, "\t\t\t", caddy_version),
        "\t\t}",
        "\t}",
    ]
    return lines


def render_caddyfile(
    settings: Settings,
    entries: Sequence[PortalEntry],
    caddy_version: tuple[int, int, int] | None = None,
) -> str:
    """The Caddyfile that publishes `entries` according to the auth settings (pure), in the
    syntax of `caddy_version` (None: the current one)."""
    creds = credentials(settings)
    excluded = excluded_ports(settings)
    https = settings.enable_https
    lines = [
        "# Written by `vast-sglang-launcher edge` from PORTAL_CONFIG and the auth settings;",
        "# rewritten on every start, do not edit.",
        "{",
        "\tadmin off",
        "\tauto_https off",
        f"\tgrace_period {GRACE_PERIOD}",
        "\t# Caddy's own log: no query string (a ?token=) and no request headers",
        "\tlog {",
        "\t\tformat filter {",
        "\t\t\twrap json",
        "\t\t\tfields {",
        "\t\t\t\trequest>uri regexp \\?.* ?(hidden)",
        "\t\t\t\trequest>headers delete",
        "\t\t\t}",
        "\t\t}",
        "\t}",
        "}",
    ]
    sites = proxied_entries(entries)
    if not sites:
        lines += [
            "",
            "# no PORTAL_CONFIG entry has an external port different from its internal one",
        ]
    for entry in sites:
        auth = settings.enable_auth and entry.external not in excluded
        lines += [
            "",
            f"# :{entry.external} -> {UPSTREAM_HOST}:{entry.internal}, "
            + ("authentication required" if auth else "no authentication"),
            f"{'https' if https else 'http'}://:{entry.external} {{",
        ]
        if https:
            cert = _quoted(str(settings.tls_cert), "LAUNCHER_TLS_CERT")
            key = _quoted(str(settings.tls_key), "LAUNCHER_TLS_KEY")
            lines.append(f"\ttls {cert} {key}")
        loading = settings.run_dir if entry.internal == settings.sglang_port else None
        if loading is None and (creds.configured or not auth):
            # the SGLang API's errors go to the loading page instead (_loading_error_lines):
            # one handle_errors per site
            lines += unavailable_lines(entry)
        if auth and settings.gateway_url and entry.internal == settings.sglang_port:
            lines += _gateway_probe_lines(entry, caddy_version)
        if auth:
            lines += _auth_lines(
                creds,
                entry,
                https,
                settings.auth_link_login,
                settings.auth_cookie_max_age,
                caddy_version,
                loading,
            )
        else:
            lines += _sglang_lines(entry, loading, "\t", caddy_version)
        if loading is not None and (creds.configured or not auth):  # fail closed: 401 only
            lines += _loading_error_lines(loading)
        lines.append("}")
    return "\n".join(lines) + "\n"


def edge_warnings(settings: Settings, entries: Sequence[PortalEntry]) -> list[str]:
    """What the operator should know about this configuration (for the edge's log)."""
    creds = credentials(settings)
    sites = proxied_entries(entries)
    excluded = excluded_ports(settings)
    warnings = []
    if settings.enable_auth and not creds.configured:
        guarded = [e.external for e in sites if e.external not in excluded]
        if guarded:
            warnings.append(
                "authentication is on (ENABLE_AUTH) but neither OPEN_BUTTON_TOKEN nor "
                f"WEB_PASSWORD is set: refusing every request on ports {guarded}; set "
                "OPEN_BUTTON_TOKEN (or ENABLE_AUTH=false to publish without authentication)"
            )
    elif settings.enable_auth and creds.token is None:
        warnings.append(
            "OPEN_BUTTON_TOKEN is not set: only HTTP Basic (WEB_USERNAME/WEB_PASSWORD) is "
            "accepted; Bearer tokens and ?token= links are refused"
        )
    if not settings.enable_auth and sites:
        warnings.append(
            "ENABLE_AUTH is false: ports "
            f"{[e.external for e in sites]} are published without authentication"
        )
    unknown = sorted(excluded - {e.external for e in sites})
    if unknown:
        warnings.append(
            f"AUTH_EXCLUDE lists {unknown}, which the proxy does not serve (not an external "
            "port of a PORTAL_CONFIG entry with a different internal port)"
        )
    if sites and settings.sglang_port not in {e.internal for e in entries}:
        warnings.append(
            f"no PORTAL_CONFIG entry has LAUNCHER_SERVER_PORT ({settings.sglang_port}) as its "
            "internal "
            "port: the SGLang API is not published"
        )
    return warnings
