"""The launcher's own log lines: structlog, readable in a terminal or JSON for machines.

They go to stderr so that a command's real output (``plan --json``, ``status --json``) stays
clean on stdout; supervisord merges the two streams for the ``sglang`` program.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog

from .redact import Redactor

if TYPE_CHECKING:
    from .settings import Settings

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(
    log_format: str = "console",
    level: str = "info",
    stream: TextIO | io.TextIOBase | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Set structlog up once per process, before the first log line (`run` sets it up again
    with a stream that never blocks). Every rendered line is masked with `secrets`."""
    redact = Redactor(secrets)

    def mask(_logger: Any, _name: str, line: Any) -> Any:
        return redact(line) if isinstance(line, str) else line

    out = cast(TextIO, stream) if stream is not None else sys.stderr
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # plain tracebacks whatever is installed: structlog 26.1 dev.py picks rich's (with
        # every local variable) when rich can be imported, as in the test venv (vastai needs
        # it) but not in the image's launcher venv
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=False),
            renderer,
            mask,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def configure_for(settings: Settings, stream: TextIO | io.TextIOBase | None = None) -> None:
    """`configure` with the settings' format and level, masking every secret they hold
    (`redact.settings_secrets`): the one masking rule of the launcher's own lines."""
    from .redact import settings_secrets

    configure(settings.log_format, settings.log_level, stream, settings_secrets(settings))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
