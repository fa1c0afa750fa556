"""edge: the authenticating reverse proxy (Caddy) in front of every published port.

Owns PORTAL_CONFIG (`portal`), the pure Caddyfile rendering (`caddyfile`), and the `edge`
command plus the environment the image's supervisord configuration expands (`command`);
what the SGLang API's port answers while the server is not ready (`loading_view`, the JSON;
`loading_html`, the page; `loading_server`, the `loading-page` command that serves both).

May import: the shared top level (settings, errors, files, logs, redact, words, timestamps,
units); from supervise `status.SERVING_MARKER`, from coldstart the phase names and
`phases.fmt_duration` (the loading page reads status.json as they write it). Other
capabilities use it only through `command.service_environment`.
"""
