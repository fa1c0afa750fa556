"""edge: the authenticating reverse proxy (Caddy) in front of every published port.

Owns PORTAL_CONFIG (`portal`), the pure Caddyfile rendering (`caddyfile`), and the `edge`
command plus the environment the image's supervisord configuration expands (`command`).

May import: the shared top level (settings, errors, files, logs). Other capabilities use it
only through `command.service_environment`.
"""
