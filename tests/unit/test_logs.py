"""Secrets never reach a log line."""

from __future__ import annotations

import io
import json
import logging

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


def test_records_of_other_libraries_loggers_are_redacted_too() -> None:
    """Regression: aiohttp logs a refused request's raw line with its traceback through the
    standard library, which printed a webhook token in the path and an API token in a
    header in the clear."""
    stream = io.StringIO()
    logs.configure(fmt="json", secrets=["hook-token-0123456789"], stream=stream)
    try:
        raise ValueError("b'POST /webhooks/pixazo/hook-token-0123456789?x=\\xff HTTP/1.1'")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "127.0.0.1")
    logging.getLogger("asyncio").warning("seen %s", "hook-token-0123456789")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert 2 == len(lines)
    assert "hook-token-0123456789" not in stream.getvalue()
    assert "[redacted]" in lines[0]["exception"] and "aiohttp.server" == lines[0]["logger"]
    assert ("warning", "seen [redacted]") == (lines[1]["level"], lines[1]["event"])


def test_configuring_again_replaces_the_handler_it_added() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure(fmt="json", stream=first)
    logs.configure(fmt="json", stream=second)
    logging.getLogger("aiohttp.web").warning("once")
    assert "" == first.getvalue() and 1 == len(second.getvalue().splitlines())


def test_a_value_nested_past_any_sense_is_cut_not_a_recursion_error() -> None:
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["e"] = {}
        node = node["e"]  # type: ignore[assignment]
    structlog.get_logger("t").info("deep", payload=deep)
    assert "[nested too deeply]" in stream.getvalue()
