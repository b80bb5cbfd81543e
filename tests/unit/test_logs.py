"""Secrets never reach a log line."""

from __future__ import annotations

import io
import json

import structlog

from jobtrail.core import logs


def test_every_configured_secret_is_redacted_wherever_it_appears() -> None:
    stream = io.StringIO()
    logs.configure(fmt="json", secrets=["s3cr3t-value", "other-key-123"], stream=stream)
    log = structlog.get_logger("t")
    log.info("thing_happened", url="https://x/hook/s3cr3t-value", nested={"list": ["other-key-123"]})
    log.info("token_seen", api_token="whatever", authorization="Bearer abc")
    output = stream.getvalue()
    assert "s3cr3t-value" not in output and "other-key-123" not in output
    assert "whatever" not in output and "Bearer abc" not in output
    first = json.loads(output.splitlines()[0])
    assert "https://x/hook/[redacted]" == first["url"]
    assert "thing_happened" == first["event"]


def test_console_format_for_a_terminal() -> None:
    stream = io.StringIO()
    logs.configure(fmt="console", stream=stream)
    structlog.get_logger("t").info("hello_there", n=1)
    assert "hello_there" in stream.getvalue() and not stream.getvalue().startswith("{")
