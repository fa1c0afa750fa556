"""The auth edge's Caddyfile renderer (pure): what is published, and how auth is written."""

from __future__ import annotations

import base64
import json
import re

import pytest

from vast_sglang_launcher.edge.caddyfile import (
    FAIL_CLOSED_BODY,
    UPSTREAM_HOST,
    auth_cookie,
    credentials,
    edge_warnings,
    excluded_ports,
    parse_caddy_version,
    proxied_entries,
    regex_literal,
    render_caddyfile,
)
from vast_sglang_launcher.edge.portal import (
    link_entries,
    link_target,
    parse_portal_config,
    portal_entries,
    portal_yaml_text,
)
from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.settings import load_settings

TOKEN = 'a "b" {c} $x *.+?\\ ;'
TWO = "localhost:8000:18000:/:SGLang API|localhost:1111:11111:/:Instance Portal"


def render(**env: str) -> str:
    env.setdefault("PORTAL_CONFIG", TWO)
    settings = load_settings(env)
    return render_caddyfile(settings, portal_entries(settings))


def site(text: str, port: int) -> str:
    """The block of the site on `port`."""
    match = re.search(rf"^https?://:{port} \{{\n(.*?)^\}}$", text, re.M | re.S)
    assert match, f"no site for port {port} in:\n{text}"
    return match.group(1)


def test_default_config_publishes_portal_api_and_jupyter() -> None:
    settings = load_settings({"OPEN_BUTTON_TOKEN": "t"})
    text = render_caddyfile(settings, portal_entries(settings))
    assert re.findall(r"^(https?://:\d+) \{$", text, re.M) == [
        "http://:1111",
        "http://:8000",
        "http://:8080",
    ]
    assert "reverse_proxy 127.0.0.1:11111 {" in site(text, 1111)
    assert "reverse_proxy 127.0.0.1:18000 {" in site(text, 8000)
    assert "reverse_proxy 127.0.0.1:18080 {" in site(text, 8080)
    assert "authentication required" in text.split("http://:8080")[0].rsplit("\n\n", 1)[1]


def test_global_options_disable_admin_and_automatic_https() -> None:
    text = render(OPEN_BUTTON_TOKEN="t")
    head = text.split("\n\n")[0]
    assert "\tadmin off\n" in head
    assert "\tauto_https off\n" in head
    assert "\tgrace_period 10s\n" in head


def test_streaming_is_flushed_immediately_on_every_proxy() -> None:
    text = render(OPEN_BUTTON_TOKEN="t", AUTH_EXCLUDE="1111")
    upstreams = [line.split()[-2] for line in text.splitlines() if "reverse_proxy 127" in line]
    assert upstreams == ["127.0.0.1:18000", "127.0.0.1:11111"]
    assert text.count("flush_interval -1") == 2
    # the other two go to the loading page's socket (answers of a few hundred bytes)
    assert text.count("reverse_proxy @edge_not_serving ") == 1
    assert text.count('\t\treverse_proxy "unix/') == 1


@pytest.mark.parametrize(
    "version, line",
    [
        # Caddy v2.6.2 (Debian 12) knows only `buffer_requests`; v2.6.4 adds
        # `request_buffers SIZE`; v2.8.0 drops `buffer_requests`
        # (modules/caddyhttp/reverseproxy/caddyfile.go, UnmarshalCaddyfile, of each tag)
        ((2, 6, 2), "buffer_requests"),
        ((2, 6, 4), "request_buffers 1GiB"),
        ((2, 8, 4), "request_buffers 1GiB"),
        (None, "request_buffers 1GiB"),
    ],
)
def test_every_proxy_reads_the_request_body_before_sending_it(
    version: tuple[int, int, int] | None, line: str
) -> None:
    """A POST through the edge keeps its response (caddyfile.REQUEST_BUFFER); the caddy test
    test_token_parameters_are_removed_before_proxying lost it without this."""
    settings = load_settings(
        {"OPEN_BUTTON_TOKEN": "t", "AUTH_EXCLUDE": "1111", "PORTAL_CONFIG": TWO}
    )
    text = render_caddyfile(settings, portal_entries(settings), version)
    # the two services' proxies; the loading page's handler reads every body itself
    # (edge.loading_server), so its proxies need no buffer
    assert text.count(f"reverse_proxy {UPSTREAM_HOST}:") == 2
    assert text.count(f"\t{line}\n") == 2


@pytest.mark.parametrize(
    "text, version",
    [
        ("v2.6.2\n", (2, 6, 2)),
        ("v2.7.6 h1:J2tFn4BGtZZvTfVMNWxzHB6KSwFgjqf8Q8eu7+LdEpg=\n", (2, 7, 6)),
        ("2.10.0-beta.1 h1:x\n", (2, 10, 0)),
        ("(devel)\n", None),
        ("", None),
    ],
)
def test_caddy_version_is_read_from_caddy_version(
    text: str, version: tuple[int, int, int] | None
) -> None:
    assert parse_caddy_version(text) == version


def test_equal_ports_are_not_proxied() -> None:
    text = render(PORTAL_CONFIG="localhost:8080:8080:/:Jupyter|localhost:9000:19000:/:x")
    assert "8080" not in text
    assert "http://:9000 {" in text


def test_nothing_to_proxy_is_a_config_with_only_global_options() -> None:
    text = render(PORTAL_CONFIG="localhost:8080:8080:/:Jupyter")
    assert "://" not in text
    assert "no PORTAL_CONFIG entry" in text


def test_auth_block_accepts_bearer_basic_cookie_and_token_link() -> None:
    body = site(render(OPEN_BUTTON_TOKEN="tok123"), 8000)
    basic = base64.b64encode(b"vastai:tok123").decode()
    assert (
        "not header_regexp Authorization "
        f"^(?:(?i:bearer)\\x20tok123|(?i:basic)\\x20{regex_literal(basic)})$"
    ) in body
    name, value = auth_cookie("tok123")
    assert f"not header_regexp Cookie (?:^|;\\x20*){name}={value}(?:;|$)" in body
    assert "not vars_regexp {http.request.uri.query.token} ^tok123$" in body
    assert "handle @edge_denied {" in body
    assert "respond " in body and " 401\n" in body
    assert 'WWW-Authenticate "Basic realm=' in body
    # the token link redirects a browser and sets an HttpOnly cookie
    link = body[body.index("handle @edge_token_link") :]
    assert "redir {edge_location} 302" in link
    assert f'header Set-Cookie "{name}={value}; Path=/;' in link
    assert "HttpOnly" in link and "Secure" not in link


def test_web_password_replaces_the_token_for_basic_only() -> None:
    body = site(render(OPEN_BUTTON_TOKEN="tok", WEB_USERNAME="me", WEB_PASSWORD="pw"), 8000)
    basic = regex_literal(base64.b64encode(b"me:pw").decode())
    assert f"(?i:bearer)\\x20tok|(?i:basic)\\x20{basic})$" in body
    assert "^tok$" in body


def test_password_without_token_allows_basic_only() -> None:
    body = site(render(WEB_PASSWORD="pw"), 8000)
    basic = regex_literal(base64.b64encode(b"vastai:pw").decode())
    assert f"^(?:(?i:basic)\\x20{basic})$" in body
    assert "bearer" not in body
    assert "@edge_token_link" not in body and "query.token" not in body


def test_no_credentials_fails_closed() -> None:
    text = render()
    for port in (8000, 1111):
        body = site(text, port)
        assert body.strip() == f'respond "{FAIL_CLOSED_BODY}" 401'


def test_fail_closed_is_explained_in_the_warnings() -> None:
    settings = load_settings({"PORTAL_CONFIG": TWO})
    warnings = edge_warnings(settings, portal_entries(settings))
    assert any(
        "neither OPEN_BUTTON_TOKEN nor WEB_PASSWORD is set: refusing every request" in w
        for w in warnings
    )


def test_auth_disabled_proxies_without_checks() -> None:
    text = render(OPEN_BUTTON_TOKEN="t", ENABLE_AUTH="false")
    assert "@edge_denied" not in text and " 401" not in text
    # the only answers the edge writes itself: the page of a service that is down, and the
    # SGLang API's errors sent to the loading page (one handle_errors each)
    assert text.count("respond ") == 1 and text.count("handle_errors {") == 2
    assert text.count("reverse_proxy 127.0.0.1:") == 2
    settings = load_settings({"ENABLE_AUTH": "false", "PORTAL_CONFIG": TWO})
    warnings = edge_warnings(settings, portal_entries(settings))
    assert any("published without authentication" in w for w in warnings)


def test_auth_exclude_leaves_listed_external_ports_open() -> None:
    text = render(OPEN_BUTTON_TOKEN="t", AUTH_EXCLUDE="1111")
    assert "@edge_denied" not in site(text, 1111)
    assert "@edge_denied" in site(text, 8000)
    assert excluded_ports(load_settings({"AUTH_EXCLUDE": " 1111, 8000 22"})) == {1111, 8000, 22}


@pytest.mark.parametrize("value", ["abc", "8000,x", "0", "70000", "-1"])
def test_auth_exclude_rejects_non_ports(value: str) -> None:
    with pytest.raises(ConfigError, match="AUTH_EXCLUDE"):
        render(OPEN_BUTTON_TOKEN="t", AUTH_EXCLUDE=value)


def test_auth_exclude_of_an_unserved_port_is_warned() -> None:
    settings = load_settings({"OPEN_BUTTON_TOKEN": "t", "AUTH_EXCLUDE": "8090"})
    warnings = edge_warnings(settings, portal_entries(settings))
    assert any("AUTH_EXCLUDE lists [8090]" in w for w in warnings)


def test_https_serves_tls_with_the_instance_certificate_and_secure_cookie() -> None:
    text = render(OPEN_BUTTON_TOKEN="t", ENABLE_HTTPS="true")
    assert re.findall(r"^(https?://:\d+) \{$", text, re.M) == ["https://:8000", "https://:1111"]
    assert '\ttls "/etc/instance.crt" "/etc/instance.key"\n' in site(text, 8000)
    assert "HttpOnly; SameSite=Lax; Secure" in text
    custom = render(
        OPEN_BUTTON_TOKEN="t",
        ENABLE_HTTPS="true",
        LAUNCHER_TLS_CERT="/x y/c.pem",
        LAUNCHER_TLS_KEY="/k.pem",
    )
    assert '\ttls "/x y/c.pem" "/k.pem"\n' in custom


@pytest.mark.parametrize("path", ['/a"b.pem', "/a{b}.pem", "/a\\b.pem", "/a\nb"])
def test_tls_paths_that_cannot_be_written_are_refused(path: str) -> None:
    with pytest.raises(ConfigError, match="LAUNCHER_TLS_CERT"):
        render(OPEN_BUTTON_TOKEN="t", ENABLE_HTTPS="true", LAUNCHER_TLS_CERT=path)


def test_a_hostile_token_never_appears_raw_in_the_caddyfile() -> None:
    text = render(OPEN_BUTTON_TOKEN=TOKEN)
    for piece in ('"b"', "{c}", "$x", "*.+?", "\\ ;"):
        assert piece not in text
    # every user-derived regex is one Caddyfile token: no whitespace, quotes or `{$`
    for line in text.splitlines():
        if "regexp" in line:
            pattern = line.split()[-1]
            assert not re.search(r'[\s"`#]|\{\$', pattern), line


@pytest.mark.parametrize(
    "text", ["plain", TOKEN, "tab\there", "ends with backslash\\", "-_.~!@%^&()[]=|<>,/:"]
)
def test_regex_literal_matches_exactly_its_text(text: str) -> None:
    pattern = regex_literal(text)
    assert re.fullmatch(r"[A-Za-z0-9\\x{}]*", pattern)
    assert re.fullmatch(pattern, text)
    assert not re.fullmatch(pattern, text + "x")
    assert not re.fullmatch(pattern, text[:-1])


def test_regex_literal_beyond_ascii_uses_braced_code_points() -> None:
    assert regex_literal("ü€") == "\\xfc\\x{20ac}"


def test_cookie_is_derived_from_the_token_and_hex_only() -> None:
    name, value = auth_cookie(TOKEN)
    assert re.fullmatch(r"vast_sglang_auth_[0-9a-f]{12}", name)
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert auth_cookie("other") != (name, value)
    assert auth_cookie(TOKEN) == (name, value)


def test_password_defaults_to_the_token() -> None:
    creds = credentials(load_settings({"OPEN_BUTTON_TOKEN": "t"}))
    assert (creds.token, creds.username, creds.password) == ("t", "vastai", "t")


def test_duplicate_external_ports_are_refused() -> None:
    entries = parse_portal_config("localhost:9000:19000:/:a|localhost:9000:19001:/:b")
    with pytest.raises(ConfigError, match="external port 9000 twice"):
        proxied_entries(entries)


def test_external_port_that_is_another_entrys_internal_port_is_refused() -> None:
    entries = parse_portal_config("localhost:8000:18000:/:api|localhost:18000:19000:/:b")
    with pytest.raises(ConfigError, match="18000, which is also the internal port of 'api'"):
        proxied_entries(entries)


# Values users copy from Vast's templates (vast-ai/base-image a7552d1): the SGLang
# template's (issue 18), the base image's documented default (README.md, "PORTAL_CONFIG"),
# and a derivative's with a terminal link (derivatives/llama-cpp/.../05-llama-env.sh).
VAST_SGLANG_TEMPLATE = (
    "localhost:1111:11111:/:Instance Portal|localhost:7860:17860:/:Model UI"
    "|localhost:8000:18000:/docs:SGLang API|localhost:8080:18080:/:Jupyter"
    "|localhost:8080:8080:/terminals/1:Jupyter Terminal"
)
VAST_BASE_DEFAULT = (
    "localhost:1111:11111:/:Instance Portal|localhost:8080:18080:/:Jupyter"
    "|localhost:7860:17860:/:My App"
)
VAST_LLAMA_CPP = (
    "localhost:1111:11111:/:Instance Portal|localhost:8000:18000:/:Llama.cpp UI"
    "|localhost:8080:18080:/:Jupyter|localhost:8080:8080:/terminals/1:Jupyter Terminal"
)


@pytest.mark.parametrize(
    ("value", "published", "links"),
    [
        (VAST_SGLANG_TEMPLATE, [1111, 7860, 8000, 8080], ["Jupyter Terminal"]),
        (VAST_BASE_DEFAULT, [1111, 8080, 7860], []),
        (VAST_LLAMA_CPP, [1111, 8000, 8080], ["Jupyter Terminal"]),
        # the link first: order does not matter
        ("localhost:8080:8080:/:Jupyter|localhost:8080:18000:/:api", [8080], ["Jupyter"]),
    ],
)
def test_vast_template_values_publish_their_ports_and_keep_links_as_links(
    value: str, published: list[int], links: list[str]
) -> None:
    settings = load_settings({"OPEN_BUTTON_TOKEN": "t", "PORTAL_CONFIG": value})
    entries = portal_entries(settings)
    assert [e.external for e in proxied_entries(entries)] == published
    assert [e.name for e in link_entries(entries)] == links
    text = render_caddyfile(settings, entries)
    assert re.findall(r"^http://:(\d+) \{$", text, re.M) == [str(p) for p in published]
    # every entry of the portal's list is kept, links and paths included
    apps = json.loads(portal_yaml_text(entries))["applications"]
    assert [a["open_path"] for a in apps.values()] == [e.path for e in entries]


def test_a_link_points_at_the_entry_that_publishes_its_port() -> None:
    entries = parse_portal_config(VAST_SGLANG_TEMPLATE + "|localhost:8888:8888:/lab:Own")
    terminal, own = link_entries(entries)
    target = link_target(terminal, entries)
    assert target is not None and (target.name, target.internal) == ("Jupyter", 18080)
    # a link to a port nothing publishes: the service listens on it itself
    assert link_target(own, entries) is None


def test_a_docs_path_is_where_the_portal_opens_not_a_limit_on_the_proxy() -> None:
    """Vast's edge proxies the whole port whatever the path (generate_caddyfile ignores
    open_path); so does this one."""
    text = render(OPEN_BUTTON_TOKEN="t", PORTAL_CONFIG=VAST_SGLANG_TEMPLATE)
    body = site(text, 8000)
    assert "docs" not in body
    assert "reverse_proxy 127.0.0.1:18000 {" in body


def test_every_site_answers_a_down_service_with_a_page_that_says_so() -> None:
    text = render(OPEN_BUTTON_TOKEN="t", AUTH_EXCLUDE="1111")
    body = site(text, 1111)
    assert body.count("handle_errors {") == 1
    assert "{err.status_code} >= 502 && {err.status_code} <= 504" in body
    assert "behind port 1111 (127.0.0.1:11111)" in body
    assert "header Cache-Control no-store" in body
    # the SGLang API's one error handler is the loading page's, which says more (issue 22)
    body = site(text, 8000)
    assert body.count("handle_errors {") == 1
    assert "loading.sock" in body.split("handle_errors {")[1]


def test_warns_when_the_sglang_port_is_not_published() -> None:
    # the default PORTAL_CONFIG follows the port (issue 23, item 4); one of your own may not
    settings = load_settings(
        {
            "OPEN_BUTTON_TOKEN": "t",
            "LAUNCHER_SERVER_PORT": "19000",
            "PORTAL_CONFIG": "localhost:8000:18000:/:SGLang API",
        }
    )
    warnings = edge_warnings(settings, portal_entries(settings))
    assert any("LAUNCHER_SERVER_PORT (19000)" in w for w in warnings)
    default = load_settings({"OPEN_BUTTON_TOKEN": "t", "LAUNCHER_SERVER_PORT": "19000"})
    assert not edge_warnings(default, portal_entries(default))


def test_entry_names_cannot_break_out_of_their_comment() -> None:
    """Names never reach the Caddyfile, not even in a comment (issue 11: `{$VAR}` in a
    comment was expanded by Caddy before it stripped the comment)."""
    text = render(OPEN_BUTTON_TOKEN="t", PORTAL_CONFIG="localhost:9000:19000:/:x\n}\nevil")
    assert "\n}\nevil" not in text
    assert "evil" not in text and "# :9000 -> 127.0.0.1:19000" in text


def test_portal_yaml_lists_every_entry() -> None:
    entries = parse_portal_config(TWO + "|localhost:8080:8080:/lab:Jupyter")
    apps = json.loads(portal_yaml_text(entries))["applications"]
    assert apps["Jupyter"] == {
        "hostname": "localhost",
        "external_port": 8080,
        "internal_port": 8080,
        "open_path": "/lab",
        "name": "Jupyter",
    }
    assert set(apps) == {"SGLang API", "Instance Portal", "Jupyter"}
