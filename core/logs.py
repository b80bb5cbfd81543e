"""Logging: structlog, JSON off a terminal, console on one, secrets redacted everywhere.

Event names are stable snake_case (`webhook_received`, `webhook_rejected`); context such as
the provider, job id and delivery id is bound with contextvars.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO, cast

import structlog

REDACTED = "[redacted]"
_SECRET_KEYS = re.compile(r"(authorization|token|secret|api[_-]?key|password|cookie)", re.I)
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Redactor:
    """A structlog processor that removes every configured secret and secret-named field."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {k: REDACTED if _SECRET_KEYS.search(str(k)) else self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        scrubbed: Mapping[str, Any] = self.scrub(event_dict)
        return scrubbed


class _Stderr:
    """Whatever `sys.stderr` is at the moment of writing, not when logging was set up
    (a test harness or an embedding program may swap it and close the old one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    *,
    level: str = "info",
    fmt: str = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    cache: bool = True,
) -> None:
    """Set up structlog for the whole process."""
    out: TextIO = stream or cast(TextIO, _Stderr())
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
