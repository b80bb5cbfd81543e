"""Reading a JSON request body with every refusal a client can earn: 413, 415, 400."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from jobtrail.core.model import Delivery, utcnow
from jobtrail.providers import catalog
from jobtrail.receiver.errors import HTTP_CODES, ApiError, refusal

# Credentials, never kept with a delivery: the generic ones and every provider's key header.
_DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"}) | catalog.KEY_HEADERS


def check_length(request: web.Request, limit: int) -> int | None:
    """The Content-Length, if any (413 above `limit`)."""
    length = request.content_length  # parsed again on every access
    if length is not None and length > limit:
        raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
    return length


def check_json_type(request: web.Request) -> None:
    if request.headers.get("Content-Type") == "application/json":  # as most send it: no parse
        return
    mime = request.content_type.lower()
    if mime != "application/json" and not (mime.startswith("application/") and mime.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")


async def read_body(request: web.Request, limit: int, length: int | None = None) -> bytes:
    """The raw body, refusing more than `limit` bytes even without a Content-Length.
    `length`: the Content-Length as `check_length` returned it, if already checked.
    A body cut short (the client closed, or half-closed) is a 400 `incomplete_body`; one
    whose framing or encoding aiohttp refuses while reading it, that refusal."""
    if length is None:
        length = check_length(request, limit)
    try:
        if length is not None:
            return await request.content.readexactly(length)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
        raise ApiError(400, "incomplete_body", "the body ended before it was complete") from exc
    except HttpProcessingError as exc:
        status, _, sentence = refusal(exc)
        raise ApiError(status, HTTP_CODES.get(status, "bad_request"), sentence) from exc
    except RequestPayloadError as exc:  # what aiohttp reports a body it cannot inflate or unframe as
        raise ApiError(400, "bad_request", "the body could not be decoded as its headers describe") from exc


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object from `body`; anything else is a 400 that says what is wrong."""
    try:
        payload = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", "the body is not valid UTF-8 JSON") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return payload


MAX_HEADERS = 64  # kept per delivery; beyond them, or beyond MAX_HEADER_CHARS, a count
MAX_HEADER_CHARS = 16 * 1024
MAX_VALUE = 1024
MAX_NAME = 128
TRUNCATED = ":truncated"  # not a possible HTTP/1.1 header name: says what was not kept


def _text(value: str) -> str:
    """Header text as valid Unicode: aiohttp hands a byte that is not UTF-8 over as a lone
    surrogate, which no JSON encoder or database takes; it becomes U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class HeaderScrubber:
    """Makes a request's headers fit for the delivery log: credentials and secrets removed,
    text made valid, and bounded (MAX_HEADERS headers, MAX_HEADER_CHARS characters, each
    value cut at MAX_VALUE): a request of 100 headers of 1 KiB stores 16 KiB, not 100."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        ordered = sorted(secrets, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._shortest = len(ordered[-1]) if ordered else 0  # a shorter value holds none

    def __call__(self, request: web.Request) -> dict[str, str]:
        kept: dict[str, str] = {}
        secrets, shortest = self._secrets, self._shortest
        room, left_out = MAX_HEADER_CHARS, 0
        for name, value in request.headers.items():
            if name.lower() in _DROPPED_HEADERS:
                continue
            if not value.isascii():
                value = _text(value)
            if secrets is not None and len(value) >= shortest:
                value = secrets.sub("[redacted]", value)
            value = value[:MAX_VALUE]
            key = str(name) if name.isascii() and len(name) <= MAX_NAME else _text(name[:MAX_NAME])
            room -= len(key) + len(value)
            if room < 0 or (key not in kept and len(kept) >= MAX_HEADERS):
                left_out += 1
                continue
            kept[key] = f"{kept[key]}, {value}" if key in kept else value
        if left_out:
            kept[TRUNCATED] = f"{left_out} more header(s) not kept"
        return kept

    def delivery(
        self, request: web.Request, source: str, provider: str, body: bytes, job_id: str | None
    ) -> Delivery:
        """The request as one raw delivery for the audit log, headers scrubbed."""
        # by position, in Delivery's field order (source, provider, received_at, headers,
        # body, job_id): cheaper than keywords, once per request
        return Delivery(source, provider, utcnow(), self(request), body, job_id)
