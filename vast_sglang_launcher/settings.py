"""Every knob of the launcher: one settings class, read from the environment once.

Each capability declares its knobs in its own part (`plan/knobs.py`, `edge/knobs.py`, ...; the
shared floor's in `common_knobs`), with the strict types of `knob_types`; `Settings` composes
them. Of the capabilities it imports only those parts (tests/test_layout.py keeps it so), and
it does no I/O: it reads the environment it is given, nothing else (`dirs` creates and checks
the directories a command writes).

Each field's docstring is the user-facing documentation; the settings reference,
docs/settings.md, is generated from this class (``vast-sglang-launcher settings --markdown``)
and a test keeps the two equal. Nothing else in the package reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .boot.knobs import BootKnobs
from .coldstart.knobs import ColdstartKnobs
from .common_knobs import CommonKnobs
from .edge.knobs import EdgeKnobs
from .errors import ConfigError
from .jupyter.knobs import JupyterKnobs
from .knob_types import BOOL_VOCABULARY
from .plan.knobs import DEFAULT_SERVER_PORT, PlanKnobs
from .scaleout.knobs import ScaleoutKnobs
from .serverless.knobs import ServerlessKnobs
from .supervise.knobs import SuperviseKnobs

__all__ = [  # DEFAULT_SERVER_PORT and BOOL_VOCABULARY are the parts', named here as before
    "BOOL_VOCABULARY",
    "DEFAULT_SERVER_PORT",
    "DEPRECATED_NAMES",
    "Settings",
    "deprecated_in_use",
    "deprecation_warnings",
    "env_name",
    "inspect_settings",
    "load_settings",
    "secret_names",
    "shown_value",
]

# Variables whose empty value means something (an empty CUDA_VISIBLE_DEVICES hides every GPU);
# any other variable set to an empty string counts as unset.
_EMPTY_IS_A_VALUE = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"})


class Settings(
    ServerlessKnobs,
    ScaleoutKnobs,
    EdgeKnobs,
    JupyterKnobs,
    BootKnobs,
    CommonKnobs,
    SuperviseKnobs,
    ColdstartKnobs,
    PlanKnobs,
    BaseSettings,
):
    """The launcher's configuration. Environment names are given by each field's alias.

    Each capability declares its knobs in its own part (`<capability>/knobs.py`; the shared
    floor's in `common_knobs`); this class composes them. pydantic lists the fields of the
    last base first, so the parts are named here in the reverse of the reference's order.
    """

    model_config = SettingsConfigDict(
        extra="ignore",
        case_sensitive=True,
        populate_by_name=True,
        # The parts read their fields' docstrings (each its own source); this class, which
        # declares no field, need not read its own. The parts defer their schema: only the
        # composed class is ever built.
        use_attribute_docstrings=False,
        defer_build=False,
    )

    # --- checks across parts ------------------------------------------------------------
    @model_validator(mode="after")
    def _gateway_token_ascii(self) -> Settings:
        # OPEN_BUTTON_TOKEN is the gateway's Bearer token when LAUNCHER_GATEWAY_TOKEN is unset:
        # then it goes into an HTTP header, which carries ASCII only.
        token = self.open_button_token
        if (
            self.gateway_url
            and self.gateway_token is None
            and token is not None
            and not token.get_secret_value().isascii()
        ):
            raise ValueError(
                "OPEN_BUTTON_TOKEN holds a character that is not ASCII and is the token sent "
                "to LAUNCHER_GATEWAY_URL; set LAUNCHER_GATEWAY_TOKEN (ASCII) or an ASCII "
                "OPEN_BUTTON_TOKEN"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() hands over the environment it was given, so tests are hermetic.
        return (init_settings,)


DEPRECATED_NAMES = {"SGLANG_PORT": "LAUNCHER_SERVER_PORT"}
"""Old names of settings that collide with a variable SGLang reads (0.5.6.post2 utils/
common.py and shm_broadcast.py; 0.5.23 environ.py `SGLANG_PORT`): still read, with a
warning, while the new name is unset."""


def deprecated_in_use(environ: Mapping[str, str]) -> dict[str, str]:
    """Old name -> new name, for each old name that gives a setting its value here."""
    return {
        old: new
        for old, new in DEPRECATED_NAMES.items()
        if environ.get(old, "").strip() and not environ.get(new, "").strip()
    }


def deprecation_warnings(environ: Mapping[str, str]) -> list[str]:
    return [
        f"{old} is deprecated as the launcher's setting (SGLang reads {old} itself, for its "
        f"internal ports): set {new} instead; {old} is not passed to the server"
        for old, new in deprecated_in_use(environ).items()
    ]


def env_name(field: str) -> str:
    """The environment variable a field is read from (its first alias)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else field.upper()
    return alias if isinstance(alias, str) else field.upper()


def _settings_data(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `env` that name a setting and are set (empty counts as unset)."""
    names = {env_name(f) for f in Settings.model_fields}
    for f in Settings.model_fields.values():
        if isinstance(f.validation_alias, AliasChoices):
            names.update(c for c in f.validation_alias.choices if isinstance(c, str))
    return {k: v for k, v in env.items() if k in names and (v.strip() or k in _EMPTY_IS_A_VALUE)}


def inspect_settings(environ: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings with every bad value left at its default, and for each bad variable the
    reason (`settings` prints every value, marks the bad ones, then exits 78)."""
    data = _settings_data(environ)
    bad = {k: "it contains bytes that are not UTF-8" for k, v in data.items() if not _is_utf8(v)}
    for _ in range(len(Settings.model_fields) + 1):
        try:
            return Settings.model_validate({k: v for k, v in data.items() if k not in bad}), bad
        except ValidationError as exc:
            for err in exc.errors():
                var = _error_var(err)
                msg = str(err["msg"]).removeprefix("Value error, ")
                bad.setdefault(
                    var,
                    f"expected one of {BOOL_VOCABULARY}" if err["type"].startswith("bool") else msg,
                )
            if all(_error_var(e) not in data for e in exc.errors()):
                break  # a problem no single variable causes: leave it to load_settings
    return Settings.model_validate({}), bad


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings; a bad value raises ConfigError naming the variable and the fix
    (one line per bad value, the value shortened and a secret's value never shown)."""
    env = dict(os.environ if environ is None else environ)
    data = _settings_data(env)
    not_utf8 = sorted(k for k, v in data.items() if not _is_utf8(v))
    if not_utf8:
        raise ConfigError(
            "\n".join(
                f"{var} is not valid: it contains bytes that are not UTF-8; fix or unset {var}"
                for var in not_utf8
            )
        )
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, env)) from None


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        return False
    return True


def secret_names() -> frozenset[str]:
    """Every variable name of a secret setting (its aliases included)."""
    names: set[str] = set()
    for name, f in Settings.model_fields.items():
        if "SecretStr" in str(f.annotation):
            alias = f.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(c for c in alias.choices if isinstance(c, str))
            names.add(env_name(name))
    return frozenset(names)


def _error_var(err: Any) -> str:
    """The variable an error is about: its location, or (a check across settings) the
    variable its message starts with."""
    if err["loc"]:
        return str(err["loc"][0])
    first = str(err["msg"]).removeprefix("Value error, ").split(" ", 1)[0]
    return first if re.fullmatch(r"[A-Z][A-Z0-9_]+", first) else "?"


def shown_value(value: str, limit: int = 60) -> str:
    """`value` for an error line: quoted, escaped (no raw newline) and shortened."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def _explain(exc: ValidationError, env: Mapping[str, str]) -> str:
    secret = secret_names()
    lines = []
    for err in exc.errors():
        var = _error_var(err)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across settings: its message names them
            lines.append(f"{msg}; fix or unset {var}")
            continue
        value = "'***'" if var in secret else shown_value(env.get(var, ""))
        if err["type"].startswith("bool"):
            msg = f"expected one of {BOOL_VOCABULARY}"
        lines.append(f"{var}={value} is not valid: {msg}; fix or unset {var}")
    return "\n".join(lines)
