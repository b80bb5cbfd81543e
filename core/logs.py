"""Logging: structlog, JSON off a terminal, console on one, secrets redacted everywhere.

Event names are stable snake_case (`webhook_received`, `webhook_rejected`); context such as
the provider, job id and delivery id is bound with contextvars. Records of the standard
library's loggers (aiohttp's, asyncio's) go through the same redaction and renderer: an
exception's text can quote a request line, and a request line a token.
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
_DEPTH = 32


class Redactor:
    """A structlog processor that removes every configured secret and secret-named field."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"), depth)
        if depth >= _DEPTH and isinstance(value, Mapping | list | tuple):
            return "[nested too deeply]"
        if isinstance(value, Mapping):
            return {
                k: REDACTED if _SECRET_KEYS.search(str(k)) else self.scrub(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub(v, depth + 1) for v in value]
        return value

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        scrubbed: Mapping[str, Any] = self.scrub(event_dict)
        return scrubbed


_OURS = "_jobtrail"  # marks the root handler `configure` added, to replace it on a second call


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
    redactor = Redactor(secrets)
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level, stamp],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(max(_LEVELS.get(level, logging.INFO), logging.INFO))  # aiohttp's debug lines stay off
