"""edge: the authenticating reverse proxy (Caddy) in front of every published port.

Owns PORTAL_CONFIG (`portal`), the pure Caddyfile rendering (`caddyfile`), the `edge`
command (`command`) and the edge's settings part (`knobs`);
what the SGLang API's port answers while the server is not ready (`loading_view`, the JSON;
`loading_html`, the page; `loading_server`, the `loading-page` command that serves both).

May import: the shared top level (settings, errors, files, logs, redact, words, timestamps,
units); from supervise `status.SERVING_MARKER`, from coldstart the phase names and
`phases.fmt_duration` (the loading page reads status.json as they write it). Other
capabilities use it only through `portal.default_portal_config` (boot) and
`portal.portal_entries` (jupyter).
"""
