"""Reading a JSON request body with every refusal a client can earn: 413, 415, 400."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from receiver.errors import ApiError

_DROPPED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "ocp-apim-subscription-key"}
)


def check_length(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")


def check_json_type(request: web.Request) -> None:
    mime = request.content_type.lower()
    if mime != "application/json" and not (mime.startswith("application/") and mime.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes even without a Content-Length."""
    check_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object from `body`; anything else is a 400 that says what is wrong."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", "the body is not valid UTF-8 JSON") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return payload


def audit_headers(request: web.Request, secrets: tuple[str, ...]) -> dict[str, str]:
    """The request's headers as kept in the delivery log: credentials removed."""
    kept: dict[str, str] = {}
    for name, value in request.headers.items():
        if name.lower() in _DROPPED_HEADERS:
            continue
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        kept[name] = value[:1024]
    return kept
