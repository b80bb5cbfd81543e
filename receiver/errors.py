"""Errors as the API shows them: an HTTP status and `{"error": code, "message": sentence}`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import http_exceptions as bad
from aiohttp import web

from jobtrail.receiver.answer import json_answer
from jobtrail.store.base import StoreError, StoreUnavailable

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "store_unavailable",
}


# The first class in this list that a parser error is an instance of says how to answer.
_REFUSALS: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (bad.DecompressSizeError, 413, "too_large", "the body is larger than allowed once decompressed"),
    (bad.LineTooLong, 400, "line_too_long", "a line of the request is longer than the server reads"),
    (bad.BadHttpMethod, 400, "bad_method", "this is not an HTTP/1.x request"),
    (bad.InvalidURLError, 400, "bad_url", "the request's URL is malformed"),
    (bad.BadStatusLine, 400, "bad_request_line", "the request line is malformed"),
    (bad.InvalidHeader, 400, "bad_header", "a header is malformed"),
    (bad.ContentEncodingError, 415, "content_encoding", "the body's Content-Encoding is not supported"),
    (bad.TransferEncodingError, 400, "bad_framing", "the body's chunked framing is malformed"),
    (bad.ContentLengthError, 400, "bad_framing", "the body does not match its Content-Length"),
    (bad.BadHttpMessage, 400, "bad_message", "the request is not valid HTTP/1.1"),
)


REFUSAL_SENTENCES = frozenset(sentence for *_, sentence in _REFUSALS)


def refusal(exc: BaseException | None, status: int = 400) -> tuple[int, str, str]:
    """(status, kind, sentence) for what aiohttp's parser refused: the request line, a
    header, the body's framing or encoding. The sentence never quotes the bytes (they
    may hold a token). Pure."""
    for kind, code, reason, sentence in _REFUSALS:
        if isinstance(exc, kind):
            return code, reason, sentence
    if status >= 500:
        return 500, "internal", "jobtrail could not handle the request"
    return status, "bad_message", "the request is not valid HTTP/1.1"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def not_configured(provider: str, doing: str) -> str:
    """Why jobtrail cannot `doing` (say, "submit to") a provider: its key is not set where
    the server runs (the CLI's own environment does not count)."""
    return (
        f"jobtrail's server has no {provider.upper()}_API_KEY, so it cannot {doing} {provider}: set it "
        "in the environment or the configuration file of `jobtrail serve`, then restart it"
    )


def error_response(status: int, code: str, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return json_answer({"error": code, "message": message}, status=status, headers=headers or None)


def check_url(request: web.Request) -> None:
    """A URL whose path or query decodes to anything but printable text (a byte that is not
    UTF-8, a NUL, a control character) is a 400: no database takes such text, and no name
    jobtrail knows holds it."""
    if not request.path.isprintable() or not request.query_string.isprintable():
        raise ApiError(400, "bad_request", "the URL's path and query must be printable UTF-8 text")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if not request.path.startswith("/webhooks/"):  # a webhook route keeps whatever it is sent
            check_url(request)
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, retry_after=exc.retry_after)
    except bad.HttpProcessingError as exc:  # the body's framing or encoding, found while reading it
        status, _, sentence = refusal(exc)
        return error_response(status, HTTP_CODES.get(status, "bad_request"), sentence)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason or code)
    except StoreUnavailable as exc:  # nothing was taken, or a retry is deduplicated: try again
        log.warning("store_unavailable", path=request.rel_url.path, reason=str(exc))
        return error_response(
            503,
            "store_unavailable",
            "jobtrail cannot record this right now; nothing was lost, send it again",
            retry_after=exc.retry_after,
        )
    except StoreError:
        log.exception("store_failed", method=request.method, path=request.rel_url.path)
        return error_response(500, "store_error", "jobtrail's store could not handle the request")
    except Exception:
        log.exception("request_failed", method=request.method, path=request.rel_url.path)
        return error_response(500, "internal", "jobtrail could not handle the request")
