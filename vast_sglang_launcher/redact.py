"""Keep secrets out of log lines: tokens in URLs, and the values of secret settings."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .settings import Settings

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words


def redact_url(url: str) -> str:
    """The URL with its password and every query value masked (`?token=***`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = "&".join(
        f"{key}={MASK}" if value else key
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret: query values and the userinfo."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [userinfo, *userinfo.split(":", 1)]
    return found


def settings_secrets(settings: Settings) -> list[str]:
    """Values of the secret settings (HF_TOKEN, OPEN_BUTTON_TOKEN, WEB_PASSWORD)."""
    return [
        secret.get_secret_value()
        for secret in (settings.hf_token, settings.open_button_token, settings.web_password)
        if secret is not None
    ]


class Redactor:
    """Masks every occurrence of the given secret strings in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if len(s) >= _MIN_SECRET}
        self._secrets = sorted(unique, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def url(self, url: str) -> str:
        """A URL fit for a log line."""
        return self(redact_url(url))


def redactor_for(settings: Settings, *urls: str) -> Redactor:
    """A redactor for the secret settings and the secret parts of the given URLs."""
    secrets = settings_secrets(settings)
    for url in urls:
        if "://" in url:
            secrets += url_secrets(url)
    return Redactor(secrets)
