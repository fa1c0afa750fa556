"""Keep secrets out of log lines and outputs: tokens in URLs, the values of secret settings,
and the values of SGLang's secret options in an argv. Every output that may hold a secret
(`plan`, `status`, status.json, the launcher's log) masks it through this module."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `status` is cheap
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from .settings import Settings

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words

SECRET_OPTIONS = ("--api-key", "--admin-api-key", "--ssl-keyfile-password")
"""SGLang options whose value is a secret, in every supported release (the tests check the
option tables: every option named like a key, token, secret or password is here or is
known not to hold one)."""
_NOT_SECRET = frozenset({"--ssl-keyfile"})
"""Options that are a prefix of a secret option but name something else (a file path)."""


def secret_option(word: str) -> bool:
    """True when `word` (before any `=`) is a secret option, or an abbreviation of one as
    argparse (allow_abbrev) reads it: a prefix of a secret option that is not itself another
    option. An abbreviation that is also a prefix of other options is masked too: SGLang
    refuses it as ambiguous, so masking it hides nothing a user needs."""
    name = word.split("=", 1)[0]
    if not name.startswith("--") or len(name) < 3 or name in _NOT_SECRET:
        return False
    return any(option.startswith(name) for option in SECRET_OPTIONS)


def argv_secrets(argv: Sequence[str]) -> list[str]:
    """The values that SGLang's secret options take in `argv` (`--api-key X`, `--api-key=X`)."""
    found = []
    for i, word in enumerate(argv):
        if not secret_option(word):
            continue
        if "=" in word:
            found.append(word.split("=", 1)[1])
        elif i + 1 < len(argv):
            found.append(argv[i + 1])
    return found


def mask_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with the value of every secret option replaced by `***`."""
    masked = list(argv)
    for i, word in enumerate(argv):
        if not secret_option(word):
            continue
        if "=" in word:
            masked[i] = word.split("=", 1)[0] + "=" + MASK
        elif i + 1 < len(argv):
            masked[i + 1] = MASK
    return masked


def redact_url(url: str) -> str:
    """The URL with its password and every query value masked (`?token=***`)."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

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
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        # `user:password` masks the password (and the pair); a lone `token@` masks the token.
        found += [userinfo, userinfo.split(":", 1)[1]] if ":" in userinfo else [userinfo]
    return found


URL_SETTINGS = (
    "hf_endpoint",
    "hotfix_script",
    "provisioning_script",
    "gateway_url",
    "worker_url",
    "gateway_workers",
)
"""Settings that hold URLs (or lists of them): their userinfo and query values are secret."""
ARGV_SETTINGS = ("sglang_args", "sglang_command", "gateway_args", "gateway_command")
"""Settings split into an argv: the values of secret options in them are secret."""


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret a setting can hold, the one list every output is masked with: the secret
    settings (HF_TOKEN, OPEN_BUTTON_TOKEN, WEB_PASSWORD, LAUNCHER_GATEWAY_TOKEN), the
    userinfo and query values of every URL setting, and the values of secret options
    (`--api-key X`) in SGLANG_ARGS and the other argv settings."""
    found = [
        secret.get_secret_value()
        for secret in (
            settings.hf_token,
            settings.open_button_token,
            settings.web_password,
            settings.gateway_token,
        )
        if secret is not None
    ]
    for name in URL_SETTINGS:
        value = getattr(settings, name, None)
        for url in str(value or "").replace(",", " ").split():
            if "://" in url:
                found += url_secrets(url)
    for name in ARGV_SETTINGS:
        found += argv_secrets(_split(str(getattr(settings, name, "") or "")))
    return found


def _split(text: str) -> list[str]:
    """`text` split like a shell would; on unbalanced quotes, split on blanks (a masking
    rule must not fail where the plan later refuses the value)."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def mask_setting(name: str, value: str) -> str:
    """The value of setting `name` (a field name) fit for an output: URLs with userinfo and
    query values masked, argv settings with secret option values masked."""
    if name in URL_SETTINGS:
        import re

        return re.sub(
            r"[^\s,]+", lambda m: redact_url(m.group()) if "://" in m.group() else m.group(), value
        )
    if name in ARGV_SETTINGS:
        import shlex

        words = _split(value)
        if argv_secrets(words):  # the masks stay bare: `***`, `--api-key=***`
            return " ".join(
                w if w == MASK or w.endswith(f"={MASK}") else shlex.quote(w)
                for w in mask_argv(words)
            )
    return value


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

    def data(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string masked (argv lists too)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


def redactor_for(settings: Settings, *urls: str) -> Redactor:
    """A redactor for the secret settings and the secret parts of the given URLs."""
    secrets = settings_secrets(settings)
    for url in urls:
        if "://" in url:
            secrets += url_secrets(url)
    return Redactor(secrets)


def argv_redactor(settings: Settings | None, argv: Sequence[str]) -> Redactor:
    """A redactor for the secret settings (when given) and the secret option values of
    `argv`."""
    secrets = settings_secrets(settings) if settings is not None else []
    return Redactor([*secrets, *argv_secrets(argv)])
